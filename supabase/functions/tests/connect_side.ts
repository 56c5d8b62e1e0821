/**
 * Stripe's Connect side for the payouts tests: the local Stripe's test extension
 * (tests/stripe/ at the project's root, served by scripts/functions_test.py): connected
 * accounts, transfers and their reversals, payouts on a connected account, and the test
 * routes that play Stripe's verification of an account and the bank's answer to a payout.
 */
import { required } from "../_shared/env.ts";
import { stripe } from "./helpers.ts";

export interface StripeObjectSeen {
  id: string;
  amount: number;
  currency: string;
}

export interface ConnectSide {
  /** A connected account that can receive payouts. */
  account(): Promise<string>;
  /** The transfers Stripe made to `account`. */
  transfers(account: string): Promise<StripeObjectSeen[]>;
  /** The payouts Stripe made on `account`. */
  payouts(account: string): Promise<StripeObjectSeen[]>;
  /** Where each payout made on `account` went (its destination), newest first. */
  payoutDestinations(account: string): Promise<string[]>;
  /** Have Stripe refuse payouts on `account` (or accept them again). */
  refusePayouts(account: string, refuse: boolean): Promise<void>;
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

/** A bank account Stripe adds to connected `account` (the test extension's route): its ba_… id. */
export async function bankAccountOf(account: string): Promise<string> {
  const res = await fetch(
    `${required("STRIPE_API_BASE")}/_test/accounts/${account}/external_accounts`,
    {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Bearer ${required("STRIPE_SECRET_KEY")}`,
      },
      body: new URLSearchParams({ currency: "usd" }),
    },
  );
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`adding a bank account to ${account} answered ${res.status}`);
  }
  const created = await res.json() as { id: string };
  return created.id;
}

function localConnect(): ConnectSide {
  return {
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
    async payoutDestinations(account) {
      const list = await stripe.payouts.list({ limit: 100 }, { stripeAccount: account });
      return list.data.map(({ destination }) =>
        typeof destination === "string" ? destination : String(destination?.id)
      );
    },
    async refusePayouts(account, refuse) {
      await testRoute(`/_test/accounts/${account}/verify`, {
        outcome: refuse ? "restricted" : "verified",
      });
    },
    close: () => Promise.resolve(),
  };
}

/** The Connect side of this run; close it after the test. */
export function connectSide(): ConnectSide {
  return localConnect();
}
