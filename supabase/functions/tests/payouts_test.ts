// payouts: an approved withdrawal is sent to the contractor's connected account as a transfer
// and a payout, each with its withdrawal's idempotency key; it completes or fails only by the
// webhook, and a Stripe failure leaves it approved and retryable, never paid twice.
import { assert_, assertEquals } from "./assert.ts";
import payouts from "../payouts/index.ts";
import webhook from "../stripe-webhook/index.ts";
import {
  call,
  db,
  makeUser,
  reportedInconsistencies,
  serveWebhooks,
  serviceToken,
  stripe,
  stripeId,
  test,
  userToken,
  waitFor,
} from "./helpers.ts";
import { addPayoutMethod, lookupOf, verifyAccount } from "./tokens.ts";
import {
  approvedWithdrawal,
  attempts,
  payOut,
  type Result,
  setAsideOtherDue,
  settle,
  withConnect,
  withdrawable,
  withdrawal,
} from "./withdrawals.ts";

test("without the service role: 401 without a token, 403 with a user's", async () => {
  const none = await call(payouts, "payouts", { body: {} });
  assertEquals(none.status, 401);
  const user = await makeUser("hana");
  const asUser = await call(payouts, "payouts", { token: await userToken(user), body: {} });
  assertEquals(asUser.status, 403);
});

test(
  "an approved withdrawal: one transfer and one payout with its keys, recorded, not yet paid",
  async () => {
    await withConnect(async (side) => {
      const { account, bank, withdrawal: id } = await approvedWithdrawal(
        await side.account(),
        12345,
      );
      const { status, body } = await payOut({ withdrawal_id: id });
      assertEquals(status, 200, JSON.stringify(body));
      const [result] = body.results as Result[];
      assertEquals(result.status, "sent");
      assertEquals(await side.transfers(account), [
        { id: result.transfer_id, amount: 12345, currency: "usd" },
      ]);
      assertEquals(await side.payouts(account), [
        { id: result.payout_id, amount: 12345, currency: "usd" },
      ]);
      assertEquals(
        await side.payoutDestinations(account),
        [bank],
        "the payout goes to the payout method's bank account, not the account's default",
      );
      const row = await withdrawal(id);
      assertEquals(row.status, "processing", "it completes only by the webhook");
      assertEquals(row.processor_transfer_id, result.transfer_id);
      assertEquals(row.processor_payout_id, result.payout_id);
      const again = await payOut({ withdrawal_id: id });
      assertEquals(again.status, 404, "a withdrawal paid out is not due again");
      assertEquals((await side.transfers(account)).length, 1, "nor transferred again");
      assertEquals((await side.payouts(account)).length, 1, "nor paid out again");
    });
  },
);

test("all due withdrawals are sent by one call without a body", async () => {
  await withConnect(async (side) => {
    const a = await approvedWithdrawal(await side.account(), 1000);
    const b = await approvedWithdrawal(await side.account(), 2000);
    await setAsideOtherDue([a.withdrawal, b.withdrawal]);
    const { status, body } = await call(payouts, "payouts", { token: await serviceToken() });
    assertEquals(status, 200, JSON.stringify(body));
    const results = body.results as Result[];
    const sent = results.filter((r) => r.status !== "reversed").map((r) => [
      r.withdrawal_id,
      r.status,
    ]);
    assertEquals(sent.sort(), [[a.withdrawal, "sent"], [b.withdrawal, "sent"]].sort());
    assert_(
      results.every((r) => r.status !== "reversed" || r.reversal_id),
      "any other result is the reversal of a set-aside withdrawal's transfer",
    );
    assertEquals((await withdrawal(a.withdrawal)).status, "processing");
    assertEquals((await withdrawal(b.withdrawal)).status, "processing");
  });
});

test("a withdrawal whose connected account does not open fails alone: the others are sent", async () => {
  await withConnect(async (side) => {
    const sent = await approvedWithdrawal(await side.account(), 1500);
    // Dora's account is known by its lookup alone (account.updated came first, and a trusted
    // write gave it its owner): no sealed token to open.
    const dora = await makeUser("dora", true);
    const account = stripeId("acct", 16);
    await db`
      insert into public.processor_accounts (user_id, processor_account_id_lookup)
      values (${dora}, ${await lookupOf(account)})
    `;
    const method = await addPayoutMethod(dora, account, stripeId("ba", 12));
    await verifyAccount(account);
    await db`select tests.fund_wallet(${dora}, 900000)`;
    const [stuck] = await db`
      insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (${dora}, ${method}, 1500, 'USD')
      returning id
    `;
    await setAsideOtherDue([sent.withdrawal, stuck.id]);
    const { status, body } = await call(payouts, "payouts", { token: await serviceToken() });
    assertEquals(status, 502, JSON.stringify(body));
    const results = body.results as Result[];
    const failed = results.find((r) => r.withdrawal_id === stuck.id);
    assertEquals([failed?.status, failed?.code], ["failed", "account_unreadable"]);
    assert_(!/acct_/.test(JSON.stringify(body)), "no result names a token");
    assertEquals(results.find((r) => r.withdrawal_id === sent.withdrawal)?.status, "sent");
    assertEquals((await withdrawal(stuck.id)).status, "approved", "nothing was sent for it");
  });
});

test(
  "Stripe refusing the payout: 502, the refusal recorded with its code; once the account can be paid, the retry under the next key pays once",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account());
      await side.refusePayouts(account, true);
      const failed = await payOut({ withdrawal_id: id });
      assertEquals(failed.status, 502, JSON.stringify(failed.body));
      const [result] = failed.body.results as Result[];
      assertEquals(
        [result.status, result.stage, result.code, result.next_idempotency_key],
        ["failed", "payout", "payouts_not_allowed", `withdrawal:${id}:payout:2`],
      );
      const row = await withdrawal(id);
      assertEquals(row.status, "approved", "the reservation stays: still approved");
      assertEquals(row.processor_payout_id, null);
      assertEquals(row.processor_transfer_id, result.transfer_id, "the transfer made is recorded");
      assertEquals(await attempts(id), [["payout", 1, "failed", "payouts_not_allowed"]]);
      await side.refusePayouts(account, false);
      // Stripe keeps the answer to an idempotency key, a refusal too: under the first key the
      // retry would be refused for a day. It goes under the next attempt's key, and pays.
      const retried = await payOut({ withdrawal_id: id });
      assertEquals(retried.status, 200, JSON.stringify(retried.body));
      const [sent] = retried.body.results as Result[];
      assertEquals([sent.status, sent.transfer_id], ["sent", result.transfer_id]);
      assertEquals((await side.transfers(account)).length, 1, "the retry makes no second transfer");
      assertEquals(
        (await side.payouts(account)).map((p) => p.id),
        [sent.payout_id],
        "and one payout",
      );
      assertEquals((await withdrawal(id)).status, "processing");
      const again = await payOut({ withdrawal_id: id });
      assertEquals(again.status, 404, "nothing is due any more");
    });
  },
);

test(
  "a payout refused again after a retry: each refusal is recorded once, under its own key",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account());
      await side.refusePayouts(account, true);
      const first = await payOut({ withdrawal_id: id });
      const second = await payOut({ withdrawal_id: id });
      assertEquals([first.status, second.status], [502, 502]);
      assertEquals(
        (second.body.results as Result[])[0].next_idempotency_key,
        `withdrawal:${id}:payout:3`,
      );
      assertEquals(await attempts(id), [
        ["payout", 1, "failed", "payouts_not_allowed"],
        ["payout", 2, "failed", "payouts_not_allowed"],
      ]);
      assertEquals((await side.transfers(account)).length, 1, "one transfer in all");
      assertEquals(await side.payouts(account), []);
      await setAsideOtherDue([]);
    });
  },
);

test(
  "Stripe unreachable: 502, nothing recorded; the retry, under the same keys, pays once",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account());
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
      const [result] = answer.body.results as Result[];
      assertEquals([result.stage, result.code], ["transfer", "processor_unavailable"]);
      assertEquals(await withdrawal(id), {
        status: "approved",
        processor_transfer_id: null,
        processor_payout_id: null,
      });
      const retried = await payOut({ withdrawal_id: id });
      assertEquals(retried.status, 200, JSON.stringify(retried.body));
      assertEquals((await side.transfers(account)).length, 1);
      assertEquals((await side.payouts(account)).length, 1);
      assertEquals((await withdrawal(id)).status, "processing");
    });
  },
);

test(
  "a transfer made but refused by the database: reported as an inconsistency, no payout",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account());
      await db`revoke execute on function public.record_withdrawal_transfer(uuid, text) from payment_service`;
      let answer;
      try {
        answer = await payOut({ withdrawal_id: id });
      } finally {
        await db`grant execute on function public.record_withdrawal_transfer(uuid, text) to payment_service`;
      }
      assertEquals(answer.status, 502);
      const [result] = answer.body.results as Result[];
      assertEquals([result.stage, result.code], ["record_transfer", "transfer_not_recorded"]);
      assertEquals((await side.transfers(account)).map((t) => t.id), [result.transfer_id]);
      assertEquals(await side.payouts(account), [], "no payout follows");
      const reported = await reportedInconsistencies(result.transfer_id as string);
      assertEquals(reported.length, 1);
      assertEquals(reported[0].kind, "transfer_unrecorded");
      assertEquals(String(reported[0].amount_minor), "10000");
    });
  },
);

test("payout.paid completes the withdrawal; payout.failed fails it", async () => {
  const server = await serveWebhooks(webhook);
  try {
    await withConnect(async (side) => {
      const paid = await approvedWithdrawal(await side.account(), 3000);
      const lost = await approvedWithdrawal(await side.account(), 4000);
      const sent: Result[] = [];
      for (const w of [paid, lost]) {
        const { status, body } = await payOut({ withdrawal_id: w.withdrawal });
        assertEquals(status, 200, JSON.stringify(body));
        sent.push(...body.results as Result[]);
      }
      assertEquals((await withdrawal(paid.withdrawal)).status, "processing");
      await settle(sent[0], "paid");
      await settle(sent[1], "failed");
      const settled = await waitFor(async () =>
        (await withdrawal(paid.withdrawal)).status === "paid" &&
        (await withdrawal(lost.withdrawal)).status === "failed"
      );
      assert_(settled, "the webhooks completed one withdrawal and failed the other");
    });
  } finally {
    await server.close();
  }
});

test(
  "a payout failed after its transfer: the transfer is reversed once, and its inconsistency resolved",
  async () => {
    const server = await serveWebhooks(webhook);
    try {
      await withConnect(async (side) => {
        const { account, withdrawal: id } = await approvedWithdrawal(await side.account(), 5000);
        const sent = await payOut({ withdrawal_id: id });
        assertEquals(sent.status, 200, JSON.stringify(sent.body));
        const [result] = sent.body.results as Result[];
        await settle(result, "failed");
        assert_(
          await waitFor(async () => (await withdrawal(id)).status === "failed"),
          "payout.failed fails the withdrawal",
        );
        const transferId = result.transfer_id as string;
        const [open] = await reportedInconsistencies(transferId);
        assertEquals(
          [open.kind, String(open.amount_minor), open.resolution],
          ["transfer_unreversed", "5000", null],
          "until it is reversed, the transfer is an open inconsistency",
        );
        const reversed = await payOut({ withdrawal_id: id });
        assertEquals(reversed.status, 200, JSON.stringify(reversed.body));
        const [done] = reversed.body.results as Result[];
        assertEquals([done.status, done.transfer_id], ["reversed", transferId]);
        const transfer = await stripe.transfers.retrieve(transferId);
        assertEquals([transfer.amount_reversed, transfer.reversed], [5000, true]);
        const reversals = await stripe.transfers.listReversals(transferId);
        assertEquals(reversals.data.map((r) => r.id), [done.reversal_id]);
        assertEquals(await attempts(id), [["reversal", 1, "succeeded", done.reversal_id]]);
        const [closed] = await reportedInconsistencies(transferId);
        assert_(closed.resolution !== null, "the reversal resolves the inconsistency");
        const again = await payOut({ withdrawal_id: id });
        assertEquals(again.status, 404, "nothing is left to reverse");
        assertEquals((await stripe.transfers.listReversals(transferId)).data.length, 1);
        assertEquals((await side.payouts(account)).length, 1);
      });
    } finally {
      await server.close();
    }
  },
);

test(
  "a payout failed after its transfer keeps the money reserved until the reversal, which a run sends before its transfers",
  async () => {
    const server = await serveWebhooks(webhook);
    try {
      await withConnect(async (side) => {
        const lost = await approvedWithdrawal(await side.account(), 6000);
        const sent = await payOut({ withdrawal_id: lost.withdrawal });
        assertEquals(sent.status, 200, JSON.stringify(sent.body));
        const before = await withdrawable(lost.carl);
        await settle((sent.body.results as Result[])[0], "failed");
        assert_(
          await waitFor(async () => (await withdrawal(lost.withdrawal)).status === "failed"),
          "payout.failed fails the withdrawal",
        );
        assertEquals(
          await withdrawable(lost.carl),
          before,
          "the money is on the connected account, not back in the wallet",
        );
        const next = await approvedWithdrawal(await side.account(), 7000);
        await setAsideOtherDue([next.withdrawal]);
        const run = await payOut();
        const results = run.body.results as Result[];
        const reversedAt = results.findIndex((r) =>
          r.withdrawal_id === lost.withdrawal && r.status === "reversed"
        );
        const sentAt = results.findIndex((r) =>
          r.withdrawal_id === next.withdrawal && r.status === "sent"
        );
        assert_(reversedAt >= 0 && sentAt >= 0, JSON.stringify(results));
        assert_(reversedAt < sentAt, "the reversal is sent before the run's new transfer");
        assertEquals(
          await withdrawable(lost.carl),
          before + 6000,
          "once the reversal is recorded, the money is back in the wallet",
        );
      });
    } finally {
      await server.close();
    }
  },
);

test(
  "a transfer reversal Stripe refuses is recorded, and retried under the next key",
  async () => {
    await withConnect(async (side) => {
      const { account, withdrawal: id } = await approvedWithdrawal(await side.account(), 7000);
      const sent = await payOut({ withdrawal_id: id });
      const [result] = sent.body.results as Result[];
      // payout.failed reaches the database before the local Stripe returns the payout's amount
      // to the account: its balance, all paid out, cannot cover the reversal yet.
      assertEquals((await withdrawal(id)).status, "processing");
      await db.begin(async (tx) => {
        await tx`select set_config('role', 'payment_service', true),
          set_config('request.jwt.claims', '{"role": "payment_service"}', true)`;
        await tx`select public.apply_stripe_event(${
          tx.json({
            id: stripeId("evt"),
            object: "event",
            type: "payout.failed",
            // As the stripe-webhook function passes it on: the account by its lookup.
            account: await lookupOf(account),
            data: {
              object: {
                id: String(result.payout_id),
                object: "payout",
                amount: 7000,
                currency: "usd",
                status: "failed",
                failure_code: "account_closed",
              },
            },
          })
        })`;
      });
      assertEquals((await withdrawal(id)).status, "failed");
      const refused = await payOut({ withdrawal_id: id });
      assertEquals(refused.status, 502, JSON.stringify(refused.body));
      const [failed] = refused.body.results as Result[];
      assertEquals(
        [failed.stage, failed.code, failed.next_idempotency_key],
        ["reversal", "balance_insufficient", `withdrawal:${id}:reversal:2`],
      );
      await settle(result, "failed"); // the amount is back on the account
      const retried = await payOut({ withdrawal_id: id });
      assertEquals(retried.status, 200, JSON.stringify(retried.body));
      const [done] = retried.body.results as Result[];
      assertEquals(done.status, "reversed");
      assertEquals(await attempts(id), [
        ["reversal", 1, "failed", "balance_insufficient"],
        ["reversal", 2, "succeeded", done.reversal_id],
      ]);
      assertEquals((await side.transfers(account)).length, 1);
    });
  },
);
