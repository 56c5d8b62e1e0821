// milestone-payments: a PaymentIntent for exactly the payment's amount, charged at most once
// per attempt; the payment is funded only by Stripe's webhook.
import { assert_, assertEquals } from "./assert.ts";
import { required } from "../_shared/env.ts";
import milestonePayments from "../milestone-payments/index.ts";
import webhook from "../stripe-webhook/index.ts";
import {
  call,
  countedCalls,
  db,
  eventBody,
  makeUser,
  paymentStatus,
  pendingPayment,
  reportedInconsistencies,
  saveCard,
  serveWebhooks,
  setRateCount,
  signature,
  stripe,
  test,
  userClaims,
  userToken,
  waitFor,
  withStripeUnreachable,
} from "./helpers.ts";
import { customerOf } from "./tokens.ts";

/** A payer with a saved card (`number`) and a pending payment of `amount` to a contractor. */
async function payerWithCard(number = "4242424242424242", amount = 40000) {
  const payer = await makeUser("hana");
  const payee = await makeUser("carl", true);
  const saved = await saveCard(payer, number);
  assertEquals(saved.status, 201, JSON.stringify(saved.body));
  const payment = await pendingPayment(payer, payee, amount);
  return { payer, payee, payment, method: saved.body.id as string, card: saved.card };
}

function fund(payer: string, body: Record<string, unknown>, aal: "aal1" | "aal2" = "aal2") {
  return userToken(payer, aal).then((token) =>
    call(milestonePayments, "milestone-payments", { token, body })
  );
}

/** recover_processor_inconsistency as payment_service. */
async function recover(id: string): Promise<Record<string, unknown>> {
  const [row] = await db.begin(async (tx) => {
    await tx`select set_config('role', 'payment_service', true),
      set_config('request.jwt.claims', '{"role": "payment_service"}', true)`;
    return await tx`select public.recover_processor_inconsistency(${id}) as r`;
  });
  return row.r as Record<string, unknown>;
}

async function intentsFor(payment: string) {
  const list = await stripe.paymentIntents.list({ limit: 100 });
  return list.data.filter((pi) => pi.metadata?.milestone_payment_id === payment);
}

test("without a token: 401", async () => {
  const { status } = await call(milestonePayments, "milestone-payments", { body: {} });
  assertEquals(status, 401);
});

test("ids that are not UUIDs are a 422 naming the field", async () => {
  const payer = await makeUser("hana");
  const { status, body } = await fund(payer, {
    milestone_payment_id: "1 or 1=1",
    payment_method_id: crypto.randomUUID(),
  });
  assertEquals(status, 422);
  assertEquals(body.field, "milestone_payment_id");
});

test("a charged card: 202, exactly the payment's amount, funded only by the webhook", async () => {
  const { payer, payment, method } = await payerWithCard("4242424242424242", 40000);
  const answer = await fund(payer, {
    milestone_payment_id: payment,
    payment_method_id: method,
    amount_minor: 1, // a client-sent amount is ignored
    currency: "JPY",
  });
  assertEquals(answer.status, 202, JSON.stringify(answer.body));
  assertEquals(answer.body.status, "succeeded");
  const intent = await stripe.paymentIntents.retrieve(answer.body.payment_intent_id as string);
  assertEquals(intent.amount, 40000);
  assertEquals(intent.currency, "usd");
  assertEquals(intent.metadata.milestone_payment_id, payment);
  assertEquals(await paymentStatus(payment), "pending", "the function's own view funds nothing");
});

test("the webhook that follows the charge funds the payment", async () => {
  const server = await serveWebhooks(webhook);
  try {
    const { payer, payment, method } = await payerWithCard();
    const answer = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    assertEquals(answer.status, 202, JSON.stringify(answer.body));
    const funded = await waitFor(async () => (await paymentStatus(payment)) === "funded");
    assert_(funded, "the payment_intent.succeeded webhook funded the payment");
    const [row] = await db`
      select processor_payment_intent_id from public.milestone_payments where id = ${payment}
    `;
    assertEquals(row.processor_payment_intent_id, answer.body.payment_intent_id);
  } finally {
    await server.close();
    await fetch(`${Deno.env.get("STRIPE_API_BASE")}/_config/webhooks/functions`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ url: "http://127.0.0.1:9/nowhere", secret: "whsec_off" }),
    }).then((r) => r.body?.cancel());
  }
});

test("a retried request charges once: the same attempt, the same PaymentIntent", async () => {
  const { payer, payment, method } = await payerWithCard();
  const first = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
  const second = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
  assertEquals([first.status, second.status], [202, 202]);
  assertEquals(second.body.payment_intent_id, first.body.payment_intent_id);
  assertEquals(second.body.attempt, first.body.attempt);
  assertEquals((await intentsFor(payment)).length, 1, "Stripe holds one PaymentIntent");
});

test(
  "a declined card: 402, the failure recorded, nothing funded, and a new attempt may follow",
  async () => {
    const { payer, payee, payment, method } = await payerWithCard("4000000000000341");
    const declined = await fund(payer, {
      milestone_payment_id: payment,
      payment_method_id: method,
    });
    assertEquals(declined.status, 402, JSON.stringify(declined.body));
    assertEquals(declined.body.code, "card_declined");
    assertEquals(await paymentStatus(payment), "failed", "failed, not funded, and retryable");
    const good = await saveCard(payer, "4242424242424242");
    const retry = await fund(payer, {
      milestone_payment_id: payment,
      payment_method_id: good.body.id,
    });
    assertEquals(retry.status, 202, JSON.stringify(retry.body));
    assertEquals(retry.body.attempt, (declined.body.attempt as number) + 1, "a new attempt");
    assert_(payee);
  },
);

test(
  "3-D Secure required: 409 with what the client needs to authenticate, nothing funded",
  async () => {
    const { payer, payment, method } = await payerWithCard("4000002760003184");
    const answer = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    assertEquals(answer.status, 409, JSON.stringify(answer.body));
    assertEquals(answer.body.code, "authentication_required");
    assert_(String(answer.body.client_secret).startsWith(String(answer.body.payment_intent_id)));
    assert_(answer.body.next_action, "the next action is given");
    assertEquals(await paymentStatus(payment), "pending");
  },
);

test("Stripe unreachable: 503, nothing charged or funded, and the retry charges once", async () => {
  const { payer, payment, method } = await payerWithCard();
  const down = await withStripeUnreachable(() =>
    fund(payer, { milestone_payment_id: payment, payment_method_id: method })
  );
  assertEquals(down.status, 503);
  assertEquals(down.body.code, "processor_unavailable");
  assertEquals((await intentsFor(payment)).length, 0);
  const up = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
  assertEquals(up.status, 202);
  assertEquals(up.body.attempt, down.body.attempt, "the same attempt, the same idempotency key");
  assertEquals((await intentsFor(payment)).length, 1);
});

test(
  "another user's payment: 404 as for a missing one, the refusal recorded, and Stripe is not asked",
  async () => {
    const { payment } = await payerWithCard();
    const mallory = await makeUser("mallory");
    const card = await saveCard(mallory);
    const answer = await fund(mallory, {
      milestone_payment_id: payment,
      payment_method_id: card.body.id,
    });
    assertEquals(answer.status, 404, JSON.stringify(answer.body));
    assertEquals(answer.body.code, "PT404");
    assertEquals(answer.body.message, `no milestone payment ${payment} that you may fund`);
    const missing = crypto.randomUUID();
    const other = await fund(mallory, {
      milestone_payment_id: missing,
      payment_method_id: card.body.id,
    });
    assertEquals(
      [other.status, other.body.code, other.body.message],
      [404, "PT404", `no milestone payment ${missing} that you may fund`],
      "a missing payment gets the same answer",
    );
    assertEquals((await intentsFor(payment)).length, 0);
    const recorded = await db`
      select entity_id, success, metadata ->> 'http_status' as status
      from public.payment_audit_logs
      where operation = 'begin_funding_attempt' and user_id = ${mallory}
      order by seq
    `;
    assertEquals(
      recorded.map((r) => [r.entity_id, r.success, r.status]),
      [[payment, false, "404"], [missing, false, "404"]],
      "each refusal is committed as an audit row",
    );
    const [counted] = await db`
      select sum(call_count)::int as calls from private.rate_limit_counters
      where user_id = ${mallory} and operation = 'milestone_payments.fund'
    `;
    assertEquals(counted.calls, 2, "and counts towards the caller's limit");
  },
);

test("past the limit, a payer's refused requests are answered 429", async () => {
  const mallory = await makeUser("mallory");
  const card = await saveCard(mallory);
  const refused = () =>
    fund(mallory, { milestone_payment_id: crypto.randomUUID(), payment_method_id: card.body.id });
  const fundLimit = "milestone_payments.fund";
  // 19 calls counted in the window: the 20th, refused by the database, is answered and counted.
  await setRateCount(mallory, fundLimit, 19);
  const counted = await countedCalls(mallory, fundLimit);
  assertEquals((await refused()).status, 404, "the 20th in the window is answered");
  assertEquals(await countedCalls(mallory, fundLimit), counted + 1, "and counted");
  // 20 counted: the 21st is over the limit.
  await setRateCount(mallory, fundLimit, 20);
  const past = await refused();
  assertEquals(past.status, 429, "the 21st in the window is over the limit");
  assertEquals(past.body.code, "PT429");
});

test(
  "a payer repeating a request for an open 3-D Secure attempt meets the limit before Stripe: 429, Stripe not asked",
  async () => {
    const { payer, payment, method } = await payerWithCard("4000002760003184");
    const fundLimit = "milestone_payments.fund";
    const again = () => fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await again()).status);
    assertEquals(statuses, [409, 409, 409], "each asked Stripe for the open intent");
    // 19 counted in the window: the 20th repeat is still answered (Stripe asked), and counted.
    await setRateCount(payer, fundLimit, 19);
    const counted = await countedCalls(payer, fundLimit);
    const twentieth = await again();
    assertEquals(twentieth.status, 409, JSON.stringify(twentieth.body));
    assertEquals(twentieth.body.code, "authentication_required");
    assertEquals(await countedCalls(payer, fundLimit), counted + 1, "counted");
    // 20 counted: the 21st is refused before Stripe (unreachable now) is asked.
    await setRateCount(payer, fundLimit, 20);
    const past = await withStripeUnreachable(again);
    assertEquals(past.status, 429, JSON.stringify(past.body));
    assertEquals(past.body.code, "PT429");
    assertEquals((await intentsFor(payment)).length, 1, "one PaymentIntent");
  },
);

test("another user's payment method is refused by the database", async () => {
  const { payer, payment } = await payerWithCard();
  const mallory = await makeUser("mallory");
  const card = await saveCard(mallory);
  const answer = await fund(payer, {
    milestone_payment_id: payment,
    payment_method_id: card.body.id,
  });
  assert_([403, 404].includes(answer.status), `refused: ${JSON.stringify(answer.body)}`);
  assertEquals((await intentsFor(payment)).length, 0);
});

test(
  "charged but the database refuses the record: 502, and the inconsistency is reported",
  async () => {
    const { payer, payment, method } = await payerWithCard();
    await db`revoke execute on function public.record_payment_intent(uuid, integer, text) from payment_service`;
    let answer;
    try {
      answer = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    } finally {
      await db`grant execute on function public.record_payment_intent(uuid, integer, text) to payment_service`;
    }
    assertEquals(answer.status, 502, JSON.stringify(answer.body));
    assertEquals(answer.body.code, "charge_not_recorded");
    const intents = await intentsFor(payment);
    assertEquals(intents.map((pi) => pi.id), [answer.body.payment_intent_id]);
    assertEquals(await paymentStatus(payment), "pending");
    const reported = await reportedInconsistencies(answer.body.payment_intent_id as string);
    assertEquals(reported.length, 1, "one inconsistency names the PaymentIntent");
    assertEquals(reported[0].milestone_payment_id, payment);
    assertEquals(String(reported[0].amount_minor), "40000");
    assertEquals(reported[0].currency, "USD");
  },
);

test(
  "the recovery of a charge the database refused, once the payment is canceled: a refund",
  async () => {
    const { payer, payment, method } = await payerWithCard();
    await db`revoke execute on function public.record_payment_intent(uuid, integer, text) from payment_service`;
    let answer;
    try {
      answer = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    } finally {
      await db`grant execute on function public.record_payment_intent(uuid, integer, text) to payment_service`;
    }
    assertEquals(answer.status, 502);
    const [reported] = await reportedInconsistencies(answer.body.payment_intent_id as string);
    assertEquals(reported.kind, "charge_unrecorded");
    await db.begin(async (tx) => {
      await tx`select set_config('role', 'authenticated', true),
      set_config('request.jwt.claims', ${JSON.stringify(userClaims(payer))}, true)`;
      const [{ a }] = await tx`select public.cancel_milestone_payment(${payment}, 'cancel-1') as a`;
      assertEquals(a.status, "canceled", JSON.stringify(a));
    });
    const [recovered] = await db.begin(async (tx) => {
      await tx`select set_config('role', 'payment_service', true),
      set_config('request.jwt.claims', '{"role": "payment_service"}', true)`;
      return await tx`select public.recover_processor_inconsistency(${reported.id as string}) as r`;
    });
    assertEquals(recovered.r.recovery, "refund", JSON.stringify(recovered.r));
    assertEquals(recovered.r.payment_intent_id, answer.body.payment_intent_id);
    assertEquals(await paymentStatus(payment), "canceled", "nothing funded");
  },
);

test(
  "a charge the function could not record is still funded by Stripe's webhook, once",
  async () => {
    const { payer, payment, method } = await payerWithCard();
    await db`revoke execute on function public.record_payment_intent(uuid, integer, text) from payment_service`;
    let answer;
    try {
      answer = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    } finally {
      await db`grant execute on function public.record_payment_intent(uuid, integer, text) to payment_service`;
    }
    assertEquals(answer.status, 502);
    const intent = await stripe.paymentIntents.retrieve(answer.body.payment_intent_id as string);
    const payload = eventBody(
      "payment_intent.succeeded",
      intent as unknown as Record<string, unknown>,
    );
    const delivered = await call(webhook, "stripe-webhook", {
      body: payload,
      headers: { "stripe-signature": await signature(payload) },
    });
    assertEquals([delivered.status, delivered.body.status], [200, "processed"]);
    assertEquals(await paymentStatus(payment), "funded");
    const [reported] = await reportedInconsistencies(intent.id);
    assertEquals(reported.kind, "charge_unrecorded");
    assertEquals(reported.recovery, "fund", "the funding resolved the report of the charge");
    assert_(reported.resolved_at !== null, "in the webhook's own transaction");
    const recovered = await recover(reported.id as string);
    assertEquals([recovered.recovery, recovered.resolved], ["fund", true], "nothing to refund");
    assertEquals(await paymentStatus(payment), "funded");
    const again = await call(webhook, "stripe-webhook", {
      body: payload,
      headers: { "stripe-signature": await signature(payload) },
    });
    assertEquals([again.status, again.body.status], [200, "duplicate"]);
  },
);

test(
  "a charge the function could not record, recovered before the webhook: the attempt it was made for is funded, not refunded",
  async () => {
    const { payer, payment, method } = await payerWithCard();
    await db`revoke execute on function public.record_payment_intent(uuid, integer, text) from payment_service`;
    let answer;
    try {
      answer = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    } finally {
      await db`grant execute on function public.record_payment_intent(uuid, integer, text) to payment_service`;
    }
    assertEquals(answer.status, 502);
    const intentId = answer.body.payment_intent_id as string;
    const [reported] = await reportedInconsistencies(intentId);
    const recovered = await recover(reported.id as string);
    assertEquals([recovered.recovery, recovered.resolved], ["fund", true]);
    assertEquals(await paymentStatus(payment), "funded");
    const attempts = await db`
      select attempt, status, processor_payment_intent_id from public.funding_attempts
      where milestone_payment_id = ${payment}
    `;
    assertEquals(
      attempts.map((a) => [a.attempt, a.status, a.processor_payment_intent_id]),
      [[1, "succeeded", intentId]],
      "the open attempt took the charge's intent",
    );
    const intent = await stripe.paymentIntents.retrieve(intentId);
    const payload = eventBody(
      "payment_intent.succeeded",
      intent as unknown as Record<string, unknown>,
    );
    const delivered = await call(webhook, "stripe-webhook", {
      body: payload,
      headers: { "stripe-signature": await signature(payload) },
    });
    assertEquals([delivered.status, delivered.body.status], [200, "processed"]);
    const [{ count }] = await db`
      select count(*)::int as count from public.payment_transactions
      where processor_transaction_id = ${intentId} and type = 'charge'
    `;
    assertEquals(count, 1, "Stripe's success afterwards funds nothing twice");
  },
);

/** Move the opening of `payment`'s attempt `attempt` back by `seconds` (a trigger keeps it). */
async function ageAttempt(payment: string, attempt: number, seconds: number): Promise<void> {
  await db.begin(async (tx) => {
    await tx`alter table public.funding_attempts disable trigger keep_row_timestamps`;
    await tx`
      update public.funding_attempts set created_at = now() - make_interval(secs => ${seconds})
      where milestone_payment_id = ${payment} and attempt = ${attempt}
    `;
    await tx`alter table public.funding_attempts enable trigger keep_row_timestamps`;
  });
}

async function attemptsOf(payment: string) {
  const rows = await db`
    select attempt, status, failure_code, processor_payment_intent_id from public.funding_attempts
    where milestone_payment_id = ${payment} order by attempt
  `;
  return rows.map((a) => [a.attempt, a.status, a.failure_code, a.processor_payment_intent_id]);
}

test(
  "an attempt whose card was deleted before Stripe answered is abandoned a minute later: another card is charged once",
  async () => {
    const { payer, payment, method } = await payerWithCard();
    const down = await withStripeUnreachable(() =>
      fund(payer, { milestone_payment_id: payment, payment_method_id: method })
    );
    assertEquals(down.status, 503, "attempt 1 is open, no PaymentIntent recorded");
    await db`delete from public.payment_methods where id = ${method}`;
    const other = await saveCard(payer, "5555555555554444");
    const body = { milestone_payment_id: payment, payment_method_id: other.body.id };
    const early = await fund(payer, body);
    assertEquals(early.status, 409, JSON.stringify(early.body));
    assertEquals(
      early.body.hint,
      "retry with the same payment method, or with another one in a minute",
    );
    await ageAttempt(payment, 1, 61);
    const answer = await fund(payer, body);
    assertEquals(answer.status, 202, JSON.stringify(answer.body));
    assertEquals(answer.body.attempt, 2);
    const intents = await intentsFor(payment);
    assertEquals(intents.map((pi) => [pi.id, pi.metadata.funding_attempt, pi.payment_method]), [
      [answer.body.payment_intent_id, "2", other.card!.id],
    ], "one PaymentIntent, the new attempt's, on the other card");
    assertEquals(await attemptsOf(payment), [
      [1, "failed", "abandoned", null],
      [2, "open", null, answer.body.payment_intent_id],
    ]);
  },
);

test(
  "an attempt Stripe refuses to charge (not a decline) fails at once: the next request opens the next attempt",
  async () => {
    const { payer, payment, method } = await payerWithCard();
    const other = await saveCard(payer, "5555555555554444");
    // The payer's customer is gone from Stripe: Stripe answers 404 to an attempt, not a
    // decline, and would replay that answer to the attempt's key.
    await stripe.customers.del((await customerOf(payer))!);
    const refused = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    assertEquals(refused.status, 502, JSON.stringify(refused.body));
    assertEquals([refused.body.code, refused.body.attempt], ["processor_error", 1]);
    const next = await fund(payer, {
      milestone_payment_id: payment,
      payment_method_id: other.body.id,
    });
    assertEquals(next.status, 502, JSON.stringify(next.body));
    assertEquals(next.body.attempt, 2, "another card is not refused 409: a new attempt, at once");
    const attempts = await db`
      select attempt, status, failure_code, idempotency_key from public.funding_attempts
      where milestone_payment_id = ${payment} order by attempt
    `;
    assertEquals(
      attempts.map((a) => [a.attempt, a.status, a.failure_code !== null]),
      [[1, "failed", true], [2, "failed", true]],
      "each attempt failed with Stripe's code, and the payer may try again",
    );
    assertEquals((await intentsFor(payment)).length, 0, "nothing charged");
  },
);

/** Complete (or fail) the 3-D Secure of PaymentIntent `id` at the local Stripe, as the payer's
 * browser would; its HTTP status. */
async function authenticate(id: string, success: boolean): Promise<number> {
  const intent = await stripe.paymentIntents.retrieve(id);
  const res = await fetch(`${required("STRIPE_API_BASE")}/v1/payment_intents/${id}/_authenticate`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${required("STRIPE_SECRET_KEY")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({
      client_secret: String(intent.client_secret),
      success: String(success),
    }),
  });
  await res.body?.cancel();
  return res.status;
}

test(
  "an attempt waiting for 3-D Secure whose card was deleted does not block: another card cancels its PaymentIntent at Stripe first, then is charged once",
  async () => {
    const { payer, payment, method } = await payerWithCard("4000002760003184");
    const pending = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    assertEquals(pending.status, 409, JSON.stringify(pending.body));
    assertEquals(pending.body.code, "authentication_required");
    const first = pending.body.payment_intent_id as string;
    await db`delete from public.payment_methods where id = ${method}`;
    const other = await saveCard(payer, "5555555555554444");

    const answer = await fund(payer, {
      milestone_payment_id: payment,
      payment_method_id: other.body.id,
    });
    assertEquals(answer.status, 202, JSON.stringify(answer.body));
    assertEquals(answer.body.attempt, 2);
    const second = answer.body.payment_intent_id as string;
    const intents = await intentsFor(payment);
    assertEquals(
      intents.map((pi) => [pi.id, pi.status, pi.metadata.funding_attempt]).sort(),
      [[first, "canceled", "1"], [second, "succeeded", "2"]].sort(),
      "the 3-D Secure intent canceled at Stripe before the other card was charged",
    );
    assertEquals(await attemptsOf(payment), [
      [1, "failed", "canceled", first],
      [2, "open", null, second],
    ]);
    assert_(
      (await authenticate(first, true)) >= 400,
      "the canceled intent can no longer be completed",
    );
    assertEquals((await stripe.paymentIntents.retrieve(first)).status, "canceled");
  },
);

test(
  "an attempt whose 3-D Secure was completed meanwhile is not replaced: 409 charge_in_progress, nothing else charged",
  async () => {
    const { payer, payment, method } = await payerWithCard("4000002760003184");
    const pending = await fund(payer, { milestone_payment_id: payment, payment_method_id: method });
    assertEquals(pending.status, 409, JSON.stringify(pending.body));
    const first = pending.body.payment_intent_id as string;
    assertEquals(await authenticate(first, true), 200);
    assertEquals((await stripe.paymentIntents.retrieve(first)).status, "succeeded");
    const other = await saveCard(payer, "5555555555554444");

    const answer = await fund(payer, {
      milestone_payment_id: payment,
      payment_method_id: other.body.id,
    });
    assertEquals(answer.status, 409, JSON.stringify(answer.body));
    assertEquals(
      [answer.body.code, answer.body.payment_intent_id, answer.body.payment_intent_status],
      ["charge_in_progress", first, "succeeded"],
    );
    assertEquals(
      (await intentsFor(payment)).map((pi) => [pi.id, pi.status]),
      [[first, "succeeded"]],
      "no second PaymentIntent",
    );
    assertEquals(await attemptsOf(payment), [[1, "open", null, first]]);
    assertEquals(await paymentStatus(payment), "pending", "funded only by its webhook");
  },
);
