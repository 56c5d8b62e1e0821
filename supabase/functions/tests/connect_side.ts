/**
 * Stripe's Connect side for the payouts tests: the local Stripe's test extension when the run
 * has it (PAYGUARD_TEST_STRIPE_CONNECT=local, set by scripts/functions_test.py), else the small
 * in-test fake of the two calls (fake_connect.ts), the functions' Stripe pointed at it.
 */
import { required } from "../_shared/env.ts";
import { fakeConnect } from "./fake_connect.ts";
import { stripe, stripeId } from "./helpers.ts";

export interface StripeObjectSeen {
  id: string;
  amount: number;
  currency: string;
}

export interface ConnectSide {
  /** Whether this is the local Stripe (true) or the in-test fake. */
  local: boolean;
  /** A connected account that can receive payouts. */
  account(): Promise<string>;
  /** The transfers Stripe made to `account`. */
  transfers(account: string): Promise<StripeObjectSeen[]>;
  /** The payouts Stripe made on `account`. */
  payouts(account: string): Promise<StripeObjectSeen[]>;
  /** Have Stripe refuse payouts on `account` (or accept them again). */
  refusePayouts(account: string, refuse: boolean): Promise<void>;
  /** The idempotency keys the fake saw on `path` (the local Stripe does not show them). */
  keys(path: string): string[] | null;
  close(): Promise<void>;
}

async function testRoute(path: string, form: Record<string, string>): Promise<void> {
  const res = await fetch(`${required("STRIPE_API_BASE")}${path}`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Bearer ${required("STRIPE_SECRET_KEY")}`,
    },
    body: new URLSearchParams(form),
  });
  await res.body?.cancel();
  if (!res.ok) throw new Error(`${path} answered ${res.status}`);
}

function localConnect(): ConnectSide {
  return {
    local: true,
    async account() {
      const created = await stripe.accounts.create({ type: "custom" });
      await testRoute(`/_test/accounts/${created.id}/verify`, { outcome: "verified" });
      return created.id;
    },
    async transfers(account) {
      const list = await stripe.transfers.list({ destination: account, limit: 100 });
      return list.data.map(({ id, amount, currency }) => ({ id, amount, currency }));
    },
    async payouts(account) {
      const list = await stripe.payouts.list({ limit: 100 }, { stripeAccount: account });
      return list.data.map(({ id, amount, currency }) => ({ id, amount, currency }));
    },
    async refusePayouts(account, refuse) {
      await testRoute(`/_test/accounts/${account}/verify`, {
        outcome: refuse ? "restricted" : "verified",
      });
    },
    keys: () => null,
    close: () => Promise.resolve(),
  };
}

function fakeSide(): ConnectSide {
  const fake = fakeConnect();
  const base = required("STRIPE_API_BASE");
  Deno.env.set("STRIPE_API_BASE", fake.base);
  const seen = (path: string, account: string, header: boolean) =>
    fake.seen.filter((s) =>
      s.path === path && (header ? s.account === account : s.form.destination === account)
    );
  return {
    local: false,
    account: () => Promise.resolve(stripeId("acct", 16)),
    transfers: (account) =>
      Promise.resolve(
        fake.answers("/v1/transfers").filter((a) => a.destination === account).map(
          ({ id, amount, currency }) => ({ id, amount, currency }),
        ),
      ),
    payouts: (account) =>
      Promise.resolve(
        fake.answers("/v1/payouts").filter((a) =>
          seen("/v1/payouts", account, true).some((s) => s.answer === a.id)
        ).map(({ id, amount, currency }) => ({ id, amount, currency })),
      ),
    refusePayouts(_account, refuse) {
      fake.fail.payouts = refuse;
      return Promise.resolve();
    },
    keys: (path) => fake.seen.filter((s) => s.path === path).map((s) => s.idempotencyKey ?? ""),
    async close() {
      Deno.env.set("STRIPE_API_BASE", base);
      await fake.close();
    },
  };
}

/** The Connect side of this run; close it after the test. */
export function connectSide(): ConnectSide {
  return Deno.env.get("PAYGUARD_TEST_STRIPE_CONNECT") === "local" ? localConnect() : fakeSide();
}
