/**
 * What the payouts tests share: a contractor with an approved withdrawal on a verified connected
 * account, the withdrawal and its recorded attempts as the database has them, the payouts
 * function called with the service role, the bank's answer to a payout, and the wallet.
 */
import type postgres from "postgres";
import { assertEquals } from "./assert.ts";
import { required } from "../_shared/env.ts";
import payouts from "../payouts/index.ts";
import { bankAccountOf, type ConnectSide, connectSide } from "./connect_side.ts";
import { call, db, makeUser, serviceToken, userClaims } from "./helpers.ts";
import { addPayoutMethod, verifyAccount } from "./tokens.ts";

/** A contractor with money in their wallet and an approved withdrawal of `amount` to `account`. */
export async function approvedWithdrawal(account: string, amount = 10000) {
  // A new payout method withdrawn to at once: its cool-down is lifted (the cool-down's own
  // tests are withdrawals/payout_method_cool_down in pgTAP).
  await db`
    update private.settings set value = '0' where key = 'payout_method_cool_down_seconds'
  `;
  const carl = await makeUser("carl", true);
  const bank = await bankAccountOf(account);
  const method = { id: await addPayoutMethod(carl, account, bank) };
  // Only an account the processor verified is paid (account.updated, played here).
  await verifyAccount(account);
  await db`select tests.fund_wallet(${carl}, 900000)`;
  const [withdrawal] = await db`
    insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
    values (${carl}, ${method.id}, ${amount}, 'USD')
    returning id, status::text
  `;
  assertEquals(withdrawal.status, "approved", "a small withdrawal is approved at once");
  return { carl, account, bank, withdrawal: withdrawal.id as string };
}

export async function withdrawal(id: string) {
  const [row] = await db`
    select status::text, processor_transfer_id, processor_payout_id
    from public.withdrawals where id = ${id}
  `;
  return row;
}

/** The processor's refusals (and reversals) recorded for withdrawal `id`, in order. */
export async function attempts(id: string) {
  const rows = await db`
    select step, attempt, status, coalesce(failure_code, processor_object_id) as what
    from public.withdrawal_processor_attempts where withdrawal_id = ${id}
    order by created_at, attempt
  `;
  return rows.map((r) => [r.step, r.attempt, r.status, r.what]);
}

/**
 * Cancel, as an admin, the approved withdrawals awaiting payout other than `keep` (left by other
 * tests on purpose, or by an earlier run on a reused database), so that "every due withdrawal"
 * means this test's own.
 */
export async function setAsideOtherDue(keep: string[]): Promise<void> {
  const admin = await makeUser("ada");
  await db`update public.users set role = 'admin' where id = ${admin}`;
  await db.begin(async (tx) => {
    await tx`
      select set_config('role', 'admin', true),
        set_config('request.jwt.claims', ${
      JSON.stringify({ ...userClaims(admin), role: "admin" })
    }, true)
    `;
    await tx`
      update public.withdrawals
      set status = 'canceled', failure_reason = 'Set aside by the payouts tests'
      where status = 'approved' and processor_payout_id is null and not (id = any(${keep}::uuid[]))
    `;
  });
}

/** Run `fn` with Stripe's Connect side for this run. */
export async function withConnect<T>(fn: (side: ConnectSide) => Promise<T>): Promise<T> {
  const side = connectSide();
  try {
    return await fn(side);
  } finally {
    await side.close();
  }
}

export async function payOut(body: Record<string, unknown> = {}) {
  return await call(payouts, "payouts", { token: await serviceToken(), body });
}

export type Result = Record<string, unknown>;

/** Stripe settling `payout` of `account` as paid or failed, delivered to stripe-webhook. */
export async function settle(payout: Result, outcome: "paid" | "failed"): Promise<void> {
  const res = await fetch(
    `${Deno.env.get("STRIPE_API_BASE")}/_test/payouts/${payout.payout_id}/${
      outcome === "paid" ? "paid" : "fail"
    }`,
    {
      method: "POST",
      headers: { authorization: `Bearer ${Deno.env.get("STRIPE_SECRET_KEY")}` },
    },
  );
  await res.body?.cancel();
  assertEquals(res.status, 200);
}

/** What `user` may withdraw in USD, as they read it. */
export async function withdrawable(user: string): Promise<number> {
  const [row] = await db.begin(async (tx) => {
    await tx`
      select set_config('role', 'authenticated', true),
        set_config('request.jwt.claims', ${JSON.stringify(userClaims(user))}, true)
    `;
    return await tx`
      select withdrawable_minor from public.my_wallet_balances() where currency = 'USD'
    `;
  });
  return Number(row?.withdrawable_minor ?? 0);
}

/** Run `fn` in a transaction as payment_service, as the functions do. */
export async function asPaymentService<T>(
  fn: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<T> {
  return await db.begin(async (tx) => {
    await tx`select set_config('role', 'payment_service', true),
      set_config('request.jwt.claims', '{"role": "payment_service"}', true)`;
    return await fn(tx);
  }) as T;
}

/**
 * Record, as the payouts function does before asking Stripe, the request of `step` of withdrawal
 * `id`: {idempotency_key, request_id, resumed, ...}.
 */
export async function beginStep(id: string, step: "transfer" | "payout") {
  return await asPaymentService(async (tx) => {
    const [row] = await tx`select public.begin_withdrawal_step(${id}, ${step}) as answer`;
    return row.answer as {
      idempotency_key: string;
      request_id: string;
      resumed: boolean;
    };
  });
}

/** Cancel withdrawal `id` as an admin, with a written reason. */
export async function cancelWithdrawal(id: string): Promise<void> {
  const admin = await makeUser("ada");
  await db`update public.users set role = 'admin' where id = ${admin}`;
  await db.begin(async (tx) => {
    await tx`
      select set_config('role', 'admin', true),
        set_config('request.jwt.claims', ${
      JSON.stringify({ ...userClaims(admin), role: "admin" })
    }, true)
    `;
    await tx`
      update public.withdrawals
      set status = 'canceled', failure_reason = 'Canceled by operations: the contractor asked us'
      where id = ${id}
    `;
  });
}

/** Have the local Stripe forget every idempotency key, as Stripe does after 24 hours. */
export async function forgetIdempotencyKeys(): Promise<void> {
  const res = await fetch(`${required("STRIPE_API_BASE")}/_test/idempotency_keys`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${required("STRIPE_SECRET_KEY")}` },
  });
  await res.body?.cancel();
  assertEquals(res.status, 200);
}

/** Move the requests recorded for withdrawal `id` two minutes into the past (as postgres). */
export async function ageRequests(id: string): Promise<void> {
  await db.begin(async (tx) => {
    await tx`alter table private.withdrawal_processor_requests
      disable trigger keep_withdrawal_processor_request`;
    await tx`alter table private.withdrawal_processor_requests disable trigger keep_row_timestamps`;
    await tx`update private.withdrawal_processor_requests
      set created_at = created_at - interval '2 minutes' where withdrawal_id = ${id}`;
    await tx`alter table private.withdrawal_processor_requests enable trigger keep_row_timestamps`;
    await tx`alter table private.withdrawal_processor_requests
      enable trigger keep_withdrawal_processor_request`;
  });
}
