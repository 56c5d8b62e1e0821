// payouts when Stripe's answer was lost: a transfer, payout or reversal Stripe made for a request
// whose answer never reached payguard is found and recorded, never made a second time (even after
// Stripe has forgotten the key); a withdrawal canceled meanwhile keeps its money reserved until
// the transfer is found (and reversed) or found not made; and a refused reversal backs off.
import { assert_, assertEquals } from "./assert.ts";
import webhook from "../stripe-webhook/index.ts";
import {
  db,
  reportedInconsistencies,
  serveWebhooks,
  stripe,
  stripeId,
  test,
  waitFor,
} from "./helpers.ts";
import { lookupOf } from "./tokens.ts";
import {
  ageRequests,
  approvedWithdrawal,
  asPaymentService,
  attempts,
  beginStep,
  cancelWithdrawal,
  forgetIdempotencyKeys,
  payOut,
  type Result,
  settle,
  withConnect,
  withdrawable,
  withdrawal,
} from "./withdrawals.ts";

/** The transfer the payouts function asks for, made at Stripe under `key`. */
async function transferAsTheFunction(id: string, account: string, amount: number, key: string) {
  return await stripe.transfers.create({
    amount,
    currency: "usd",
    destination: account,
    transfer_group: `withdrawal:${id}`,
    metadata: { withdrawal_id: id },
  }, { idempotencyKey: key });
}

test(
  "a transfer Stripe made whose answer was lost is found and recorded, not made again after Stripe forgot its key",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account(), 8000);
      const request = await beginStep(id, "transfer");
      assertEquals(request.resumed, false, "the request is recorded before Stripe is asked");
      const made = await transferAsTheFunction(id, account, 8000, request.idempotency_key);
      // The answer is lost; a day later Stripe no longer knows the key.
      await forgetIdempotencyKeys();
      const { status, body } = await payOut({ withdrawal_id: id });
      assertEquals(status, 200, JSON.stringify(body));
      const [result] = body.results as Result[];
      assertEquals([result.status, result.transfer_id], ["sent", made.id]);
      assertEquals(
        (await side.transfers(account)).map((t) => t.id),
        [made.id],
        "no second transfer is made",
      );
      assertEquals((await withdrawal(id)).processor_transfer_id, made.id);
      assertEquals((await side.payouts(account)).length, 1, "and the payout follows once");
    });
  },
);

test(
  "a resumed transfer request that Stripe never carried out is sent again under its key, once",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account(), 8100);
      await beginStep(id, "transfer");
      const { status, body } = await payOut({ withdrawal_id: id });
      assertEquals(status, 200, JSON.stringify(body));
      const [result] = body.results as Result[];
      assertEquals(result.status, "sent");
      assertEquals((await side.transfers(account)).map((t) => t.id), [result.transfer_id]);
    });
  },
);

test(
  "a transfer the database refused to record is found by the next run, recorded once, and its report resolved",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account(), 8200);
      await db`revoke execute on function public.record_withdrawal_transfer(uuid, text) from payment_service`;
      let refused;
      try {
        refused = await payOut({ withdrawal_id: id });
      } finally {
        await db`grant execute on function public.record_withdrawal_transfer(uuid, text) to payment_service`;
      }
      const [first] = refused.body.results as Result[];
      assertEquals([first.stage, first.code], ["record_transfer", "transfer_not_recorded"]);
      const transferId = String(first.transfer_id);
      await forgetIdempotencyKeys();
      const { status, body } = await payOut({ withdrawal_id: id });
      assertEquals(status, 200, JSON.stringify(body));
      const [result] = body.results as Result[];
      assertEquals([result.status, result.transfer_id], ["sent", transferId]);
      assertEquals((await side.transfers(account)).map((t) => t.id), [transferId]);
      const [report] = await reportedInconsistencies(transferId);
      assertEquals(report.kind, "transfer_unrecorded");
      // the database's reason, then the withdrawal: kept as written, whatever the id's digits
      assertEquals(
        report.detail,
        `42501: permission denied for function record_withdrawal_transfer (withdrawal ${id})`,
      );
      assert_(report.resolution !== null, "recording the transfer resolves its report");
    });
  },
);

test(
  "canceled while its transfer request is unanswered: the money stays reserved, and the transfer found is recorded and reversed",
  async () => {
    await withConnect(async (side) => {
      const { carl, account, withdrawal: id } = await approvedWithdrawal(
        await side.account(),
        9000,
      );
      const before = await withdrawable(carl);
      const request = await beginStep(id, "transfer");
      const made = await transferAsTheFunction(id, account, 9000, request.idempotency_key);
      await cancelWithdrawal(id);
      assertEquals(
        await withdrawable(carl),
        before,
        "the transfer may exist at Stripe: the money is not back in the wallet",
      );
      const { status, body } = await payOut({ withdrawal_id: id });
      assertEquals(status, 200, JSON.stringify(body));
      assertEquals(
        (body.results as Result[]).map((r) => [r.status, r.transfer_id]),
        [["transfer_found", made.id], ["reversed", made.id]],
      );
      const transfer = await stripe.transfers.retrieve(made.id);
      assertEquals(transfer.amount_reversed, 9000, "Stripe took the transfer back");
      assertEquals((await side.transfers(account)).length, 1);
      assertEquals(await withdrawable(carl), before + 9000, "only then is the money back");
      const row = await withdrawal(id);
      assertEquals([row.status, row.processor_transfer_id], ["canceled", made.id]);
      const again = await payOut({ withdrawal_id: id });
      assertEquals(again.status, 404, "nothing is left to do");
    });
  },
);

test(
  "canceled while its transfer request is unanswered, and Stripe made none: reserved for a minute, then back in the wallet",
  async () => {
    await withConnect(async (side) => {
      const { carl, account, withdrawal: id } = await approvedWithdrawal(
        await side.account(),
        9100,
      );
      const before = await withdrawable(carl);
      await beginStep(id, "transfer");
      await cancelWithdrawal(id);
      const early = await payOut({ withdrawal_id: id });
      assertEquals(early.status, 200, JSON.stringify(early.body));
      assertEquals((early.body.results as Result[]).map((r) => r.status), ["pending"]);
      assertEquals(await withdrawable(carl), before, "the request may still be in flight");
      await ageRequests(id);
      const late = await payOut({ withdrawal_id: id });
      assertEquals(late.status, 200, JSON.stringify(late.body));
      assertEquals((late.body.results as Result[]).map((r) => r.status), ["not_made"]);
      assertEquals(await withdrawable(carl), before + 9100, "the money is back in the wallet");
      assertEquals(await attempts(id), [["transfer", 1, "failed", "not_made"]]);
      assertEquals(await side.transfers(account), [], "and no transfer was made");
      assertEquals((await payOut({ withdrawal_id: id })).status, 404);
    });
  },
);

test(
  "a payout Stripe made whose answer was lost is found by its request; a payout the account's owner made naming the withdrawal is not",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account(), 5000);
      const transferRequest = await beginStep(id, "transfer");
      const transfer = await transferAsTheFunction(
        id,
        account,
        5000,
        transferRequest.idempotency_key,
      );
      await asPaymentService((tx) =>
        tx`select public.record_withdrawal_transfer(${id}, ${transfer.id})`
      );
      // The owner pays out money of their own, naming the withdrawal.
      await stripe.transfers.create({ amount: 5000, currency: "usd", destination: account });
      const owners = await stripe.payouts.create(
        { amount: 5000, currency: "usd", metadata: { withdrawal_id: id } },
        { stripeAccount: account },
      );
      const request = await beginStep(id, "payout");
      const made = await stripe.payouts.create({
        amount: 5000,
        currency: "usd",
        metadata: { withdrawal_id: id, request: request.request_id },
      }, { idempotencyKey: request.idempotency_key, stripeAccount: account });
      await forgetIdempotencyKeys();
      const { status, body } = await payOut({ withdrawal_id: id });
      assertEquals(status, 200, JSON.stringify(body));
      const [result] = body.results as Result[];
      assertEquals([result.status, result.payout_id], ["sent", made.id]);
      assertEquals(
        (await side.payouts(account)).map((p) => p.id).sort(),
        [owners.id, made.id].sort(),
        "no payout is made again",
      );
      const row = await withdrawal(id);
      assertEquals([row.status, row.processor_payout_id], ["processing", made.id]);
    });
  },
);

test(
  "a reversal Stripe made whose answer was lost is found and recorded, not asked for again",
  async () => {
    const server = await serveWebhooks(webhook);
    try {
      await withConnect(async (side) => {
        const { account, withdrawal: id } = await approvedWithdrawal(await side.account(), 4000);
        const sent = await payOut({ withdrawal_id: id });
        assertEquals(sent.status, 200, JSON.stringify(sent.body));
        const [result] = sent.body.results as Result[];
        await settle(result, "failed");
        assert_(
          await waitFor(async () => (await withdrawal(id)).status === "failed"),
          "payout.failed fails the withdrawal",
        );
        const transferId = String(result.transfer_id);
        const made = await stripe.transfers.createReversal(transferId, {
          amount: 4000,
          metadata: { withdrawal_id: id },
        }, { idempotencyKey: `withdrawal:${id}:reversal` });
        await forgetIdempotencyKeys();
        const { status, body } = await payOut({ withdrawal_id: id });
        assertEquals(status, 200, JSON.stringify(body));
        const [done] = body.results as Result[];
        assertEquals([done.status, done.reversal_id], ["reversed", made.id]);
        assertEquals(
          (await stripe.transfers.listReversals(transferId)).data.map((r) => r.id),
          [made.id],
        );
        assertEquals((await side.transfers(account)).length, 1);
      });
    } finally {
      await server.close();
    }
  },
);

test(
  "a refused reversal is not retried by the next run over every withdrawal, only when its withdrawal is named",
  async () => {
    await withConnect(async (side) => {
      const { withdrawal: id, account } = await approvedWithdrawal(await side.account(), 7100);
      const sent = await payOut({ withdrawal_id: id });
      const [result] = sent.body.results as Result[];
      // payout.failed reaches the database before Stripe returns the payout's amount to the
      // account: the reversal is refused (balance_insufficient).
      const accountLookup = await lookupOf(account);
      await asPaymentService((tx) =>
        tx`select public.apply_stripe_event(${
          tx.json({
            id: stripeId("evt"),
            object: "event",
            type: "payout.failed",
            // As the stripe-webhook function passes it on: the account by its lookup.
            account: accountLookup,
            data: {
              object: {
                id: String(result.payout_id),
                object: "payout",
                amount: 7100,
                currency: "usd",
                status: "failed",
                failure_code: "account_closed",
              },
            },
          })
        })`
      );
      assertEquals((await withdrawal(id)).status, "failed");
      const refused = await payOut({ withdrawal_id: id });
      assertEquals(refused.status, 502, JSON.stringify(refused.body));
      assertEquals((refused.body.results as Result[])[0].code, "balance_insufficient");
      const all = await payOut();
      assertEquals(
        (all.body.results as Result[]).filter((r) => r.withdrawal_id === id),
        [],
        "the run over every withdrawal leaves it until its next try, an hour on",
      );
      const [listed] = await asPaymentService((tx) =>
        tx`select refusals, due, retry_after > now() as later
          from public.withdrawals_to_reverse() where withdrawal_id = ${id}`
      );
      assertEquals([listed.refusals, listed.due, listed.later], [1, false, true]);
      await settle(result, "failed"); // the amount is back on the account
      const named = await payOut({ withdrawal_id: id });
      assertEquals(named.status, 200, JSON.stringify(named.body));
      assertEquals((named.body.results as Result[])[0].status, "reversed");
      assertEquals(await attempts(id), [
        ["reversal", 1, "failed", "balance_insufficient"],
        ["reversal", 2, "succeeded", (named.body.results as Result[])[0].reversal_id],
      ]);
    });
  },
);
