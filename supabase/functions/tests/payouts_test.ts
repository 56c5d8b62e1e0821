// payouts: an approved withdrawal is sent to the contractor's connected account as a transfer
// and a payout, each with its withdrawal's idempotency key; it completes or fails only by the
// webhook, and a Stripe failure leaves it approved and retryable, never paid twice.
import { assert_, assertEquals } from "./assert.ts";
import payouts from "../payouts/index.ts";
import webhook from "../stripe-webhook/index.ts";
import { fakeConnect } from "./fake_connect.ts";
import {
  call,
  db,
  eventBody,
  makeUser,
  reportedInconsistencies,
  serviceToken,
  signature,
  test,
  userToken,
} from "./helpers.ts";

/** A contractor with money in their wallet and an approved withdrawal of `amount`. */
async function approvedWithdrawal(amount = 10000) {
  const carl = await makeUser("carl", true);
  const suffix = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  const account = `acct_${suffix}`;
  const [method] = await db`
    insert into public.payout_methods
      (user_id, type, processor_account_id, processor_external_account_id, currency)
    values (${carl}, 'bank_account', ${account}, ${"ba_" + suffix}, 'USD')
    returning id
  `;
  await db`select tests.fund_wallet(${carl}, 900000)`;
  const [withdrawal] = await db`
    insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
    values (${carl}, ${method.id}, ${amount}, 'USD')
    returning id, status::text
  `;
  assertEquals(withdrawal.status, "approved", "a small withdrawal is approved at once");
  return { carl, account, withdrawal: withdrawal.id as string };
}

async function withdrawal(id: string) {
  const [row] = await db`
    select status::text, processor_transfer_id, processor_payout_id
    from public.withdrawals where id = ${id}
  `;
  return row;
}

/** Run `fn` with the functions' Stripe pointed at a fake of the Connect endpoints. */
async function withFakeConnect<T>(fn: (fake: ReturnType<typeof fakeConnect>) => Promise<T>) {
  const fake = fakeConnect();
  const base = Deno.env.get("STRIPE_API_BASE")!;
  Deno.env.set("STRIPE_API_BASE", fake.base);
  try {
    return await fn(fake);
  } finally {
    Deno.env.set("STRIPE_API_BASE", base);
    await fake.close();
  }
}

async function payOut(body: Record<string, unknown> = {}) {
  return await call(payouts, "payouts", { token: await serviceToken(), body });
}

test("without the service role: 401 without a token, 403 with a user's", async () => {
  const none = await call(payouts, "payouts", { body: {} });
  assertEquals(none.status, 401);
  const user = await makeUser("hana");
  const asUser = await call(payouts, "payouts", { token: await userToken(user), body: {} });
  assertEquals(asUser.status, 403);
});

test(
  "an approved withdrawal: a transfer and a payout with its keys, recorded, not yet paid",
  async () => {
    const { account, withdrawal: id } = await approvedWithdrawal(12345);
    await withFakeConnect(async (fake) => {
      const { status, body } = await payOut({ withdrawal_id: id });
      assertEquals(status, 200, JSON.stringify(body));
      const [result] = body.results as Record<string, unknown>[];
      assertEquals(result.status, "sent");
      const [transfer, payout] = fake.seen;
      assertEquals(transfer.path, "/v1/transfers");
      assertEquals(transfer.idempotencyKey, `withdrawal:${id}:transfer`);
      assertEquals(transfer.account, null, "the platform makes the transfer");
      assertEquals(transfer.form.amount, "12345");
      assertEquals(transfer.form.currency, "usd");
      assertEquals(transfer.form.destination, account);
      assertEquals(payout.path, "/v1/payouts");
      assertEquals(payout.idempotencyKey, `withdrawal:${id}:payout`);
      assertEquals(payout.account, account, "the payout is made on the connected account");
      assertEquals(payout.form.amount, "12345");
      const row = await withdrawal(id);
      assertEquals(row.status, "processing", "it completes only by the webhook");
      assertEquals(row.processor_transfer_id, result.transfer_id);
      assertEquals(row.processor_payout_id, result.payout_id);
      const again = await payOut({ withdrawal_id: id });
      assertEquals(again.status, 404, "a withdrawal paid out is not due again");
      assertEquals(fake.seen.length, 2, "and Stripe is not called again");
    });
  },
  { needsBorderSql: true },
);

test("all due withdrawals are sent by one call without a body", async () => {
  const a = await approvedWithdrawal(1000);
  const b = await approvedWithdrawal(2000);
  await withFakeConnect(async () => {
    const { status, body } = await call(payouts, "payouts", { token: await serviceToken() });
    assertEquals(status, 200, JSON.stringify(body));
    const sent = (body.results as Record<string, unknown>[]).map((r) => r.withdrawal_id);
    assert_(sent.includes(a.withdrawal) && sent.includes(b.withdrawal), "both are sent");
  });
  assertEquals((await withdrawal(a.withdrawal)).status, "processing");
  assertEquals((await withdrawal(b.withdrawal)).status, "processing");
}, { needsBorderSql: true });

test(
  "Stripe failing the payout: 502, the transfer kept, the withdrawal approved and retried once",
  async () => {
    const { withdrawal: id } = await approvedWithdrawal();
    await withFakeConnect(async (fake) => {
      fake.fail.payouts = true;
      const failed = await payOut({ withdrawal_id: id });
      assertEquals(failed.status, 502);
      const [result] = failed.body.results as Record<string, unknown>[];
      assertEquals([result.status, result.stage], ["failed", "payout"]);
      const row = await withdrawal(id);
      assertEquals(row.status, "approved", "the reservation stays: still approved");
      assertEquals(row.processor_payout_id, null);
      assert_(row.processor_transfer_id, "the transfer made is recorded");
      fake.fail.payouts = false;
      const retried = await payOut({ withdrawal_id: id });
      assertEquals(retried.status, 200, JSON.stringify(retried.body));
      const transfers = fake.seen.filter((s) => s.path === "/v1/transfers");
      assertEquals(transfers.length, 1, "the retry makes no second transfer");
      const payoutKeys = fake.seen.filter((s) => s.path === "/v1/payouts").map((s) =>
        s.idempotencyKey
      );
      assertEquals(payoutKeys, [`withdrawal:${id}:payout`, `withdrawal:${id}:payout`]);
      assertEquals((await withdrawal(id)).status, "processing");
    });
  },
  { needsBorderSql: true },
);

test("Stripe unreachable: 502, nothing recorded, the withdrawal stays approved", async () => {
  const { withdrawal: id } = await approvedWithdrawal();
  const base = Deno.env.get("STRIPE_API_BASE")!;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  Deno.env.set("STRIPE_API_BASE", `http://127.0.0.1:${port}`);
  let answer;
  try {
    answer = await payOut({ withdrawal_id: id });
  } finally {
    Deno.env.set("STRIPE_API_BASE", base);
  }
  assertEquals(answer.status, 502);
  const [result] = answer.body.results as Record<string, unknown>[];
  assertEquals([result.stage, result.code], ["transfer", "processor_unavailable"]);
  assertEquals(await withdrawal(id), {
    status: "approved",
    processor_transfer_id: null,
    processor_payout_id: null,
  });
}, { needsBorderSql: true });

test(
  "a transfer made but refused by the database: reported as an inconsistency, no payout",
  async () => {
    const { withdrawal: id } = await approvedWithdrawal();
    await withFakeConnect(async (fake) => {
      await db`revoke execute on function public.record_withdrawal_transfer(uuid, text) from payment_service`;
      let answer;
      try {
        answer = await payOut({ withdrawal_id: id });
      } finally {
        await db`grant execute on function public.record_withdrawal_transfer(uuid, text) to payment_service`;
      }
      assertEquals(answer.status, 502);
      const [result] = answer.body.results as Record<string, unknown>[];
      assertEquals([result.stage, result.code], ["record_transfer", "transfer_not_recorded"]);
      assertEquals(fake.seen.map((s) => s.path), ["/v1/transfers"], "no payout follows");
      const reported = await reportedInconsistencies(result.transfer_id as string);
      assertEquals(reported.length, 1);
      assertEquals(String(reported[0].amount_minor), "10000");
    });
  },
  { needsBorderSql: true },
);

test(
  "payout.paid completes the withdrawal; payout.failed fails it and releases the money",
  async () => {
    const paid = await approvedWithdrawal(3000);
    const lost = await approvedWithdrawal(4000);
    let results: Record<string, unknown>[] = [];
    await withFakeConnect(async () => {
      for (const w of [paid, lost]) {
        const { body } = await payOut({ withdrawal_id: w.withdrawal });
        results = results.concat(body.results as Record<string, unknown>[]);
      }
    });
    const deliver = async (type: string, w: typeof paid, result: Record<string, unknown>) => {
      const payload = eventBody(type, {
        id: result.payout_id,
        object: "payout",
        amount: w === paid ? 3000 : 4000,
        currency: "usd",
        status: type === "payout.paid" ? "paid" : "failed",
        failure_code: type === "payout.failed" ? "account_closed" : null,
        failure_message: type === "payout.failed" ? "The bank account has been closed" : null,
        metadata: { withdrawal_id: w.withdrawal },
      });
      const withAccount = JSON.stringify({ ...JSON.parse(payload), account: w.account });
      return await call(webhook, "stripe-webhook", {
        body: withAccount,
        headers: { "stripe-signature": await signature(withAccount) },
      });
    };
    const ok = await deliver("payout.paid", paid, results[0]);
    assertEquals([ok.status, ok.body.status], [200, "processed"], JSON.stringify(ok.body));
    assertEquals((await withdrawal(paid.withdrawal)).status, "paid");
    const ko = await deliver("payout.failed", lost, results[1]);
    assertEquals([ko.status, ko.body.status], [200, "processed"], JSON.stringify(ko.body));
    assertEquals((await withdrawal(lost.withdrawal)).status, "failed");
  },
  { needsBorderSql: true },
);
