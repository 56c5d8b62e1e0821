// refunds: what payguard decided to give back (a dispute resolved as a refund or a split, a
// recovered charge) is refunded at Stripe under its obligation's key, recorded, and confirmed by
// charge.refunded; a Stripe that cannot be reached leaves it due, and the retry refunds once.
import { assert_, assertEquals } from "./assert.ts";
import milestonePayments from "../milestone-payments/index.ts";
import refunds from "../refunds/index.ts";
import webhook from "../stripe-webhook/index.ts";
import {
  call,
  db,
  eventBody,
  makeUser,
  paymentStatus,
  pendingPayment,
  saveCard,
  serviceToken,
  signature,
  stripe,
  test,
  testCard,
  userClaims,
  userToken,
  withStripeUnreachable,
} from "./helpers.ts";

/** Deliver `object`'s event of `type` to the webhook function, signed; its answer. */
async function deliver(type: string, object: Record<string, unknown>) {
  const payload = eventBody(type, object);
  return await call(webhook, "stripe-webhook", {
    body: payload,
    headers: { "stripe-signature": await signature(payload) },
  });
}

/** A payment of `amount` charged through milestone-payments and funded by its webhook. */
async function fundedPayment(amount: number) {
  const payer = await makeUser("hana");
  const payee = await makeUser("carl", true);
  const saved = await saveCard(payer);
  assertEquals(saved.status, 201, JSON.stringify(saved.body));
  const payment = await pendingPayment(payer, payee, amount);
  const charged = await call(milestonePayments, "milestone-payments", {
    token: await userToken(payer),
    body: { milestone_payment_id: payment, payment_method_id: saved.body.id },
  });
  assertEquals(charged.status, 202, JSON.stringify(charged.body));
  const intent = await stripe.paymentIntents.retrieve(charged.body.payment_intent_id as string);
  const funded = await deliver("payment_intent.succeeded", { ...intent });
  assertEquals(funded.body.status, "processed", JSON.stringify(funded.body));
  return { payer, payee, payment, intent: intent.id };
}

/** The payer disputes `payment`; an admin resolves it as `outcome`. */
async function resolved(payer: string, payment: string, outcome: string, share?: number) {
  await db.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true),
      set_config('request.jwt.claims', ${JSON.stringify(userClaims(payer))}, true)`;
    await tx`select public.open_dispute(${payment}, 'The work was never done',
      ${crypto.randomUUID()})`;
  });
  const admin = await makeUser("ada");
  await db`update public.users set role = 'admin' where id = ${admin}`;
  const [answer] = await db.begin(async (tx) => {
    await tx`select set_config('role', 'admin', true),
      set_config('request.jwt.claims', ${
      JSON.stringify({ ...userClaims(admin), role: "admin" })
    }, true)`;
    return await tx`select public.resolve_dispute(
      (select id from public.disputes where milestone_payment_id = ${payment}),
      ${outcome}::public.dispute_outcome, 'Checked the evidence with both parties',
      ${crypto.randomUUID()}, ${share ?? null}) as r,
      current_setting('response.status', true) as status`;
  });
  assert_(!answer.status, `resolve_dispute answered ${JSON.stringify(answer.r)}`);
}

async function obligation(payment: string) {
  const [row] = await db`
    select id::text, status, amount_minor::int as amount, processor_refund_id, idempotency_key
    from private.refund_obligations where milestone_payment_id = ${payment}
  `;
  return row;
}

function send(body: Record<string, unknown> = {}) {
  return serviceToken().then((token) => call(refunds, "refunds", { token, body }));
}

test("without the service role: 401, and 403 for a user", async () => {
  assertEquals((await call(refunds, "refunds", { body: {} })).status, 401);
  const user = await makeUser("hana");
  const asUser = await call(refunds, "refunds", { token: await userToken(user), body: {} });
  assertEquals(asUser.status, 403);
});

test("a staff refund is refunded whole at Stripe, once, and confirmed", async () => {
  const { payer, payment, intent } = await fundedPayment(30000);
  await resolved(payer, payment, "refund");
  const owed = await obligation(payment);
  assertEquals([owed.status, owed.amount], ["due", 30000]);
  assertEquals(owed.idempotency_key, `milestone_payment:${payment}:refund`);

  const answer = await send({ refund_obligation_id: owed.id });
  assertEquals(answer.status, 200, JSON.stringify(answer.body));
  const [result] = answer.body.results as Record<string, unknown>[];
  assertEquals(result.status, "sent");
  const refund = await stripe.refunds.retrieve(result.refund_id as string);
  assertEquals([refund.amount, refund.payment_intent], [30000, intent]);
  assertEquals(refund.metadata?.milestone_payment_id, payment);
  assertEquals((await obligation(payment)).status, "sent");

  const again = await send({ refund_obligation_id: owed.id });
  assertEquals(again.status, 404, "a refund sent is not sent again");

  const charge = await stripe.charges.retrieve(refund.charge as string);
  assertEquals(charge.amount_refunded, 30000);
  const confirmed = await deliver("charge.refunded", { ...charge });
  assertEquals(confirmed.body.status, "processed", JSON.stringify(confirmed.body));
  const done = await obligation(payment);
  assertEquals([done.status, done.processor_refund_id], ["confirmed", refund.id]);
});

test("a split refunds the payer's share only", async () => {
  const { payer, payment, intent } = await fundedPayment(30000);
  await resolved(payer, payment, "split", 10000);
  const owed = await obligation(payment);
  assertEquals(owed.amount, 20000);
  const answer = await send({ refund_obligation_id: owed.id });
  assertEquals(answer.status, 200, JSON.stringify(answer.body));
  const list = await stripe.refunds.list({ payment_intent: intent });
  assertEquals(list.data.map((r) => r.amount), [20000]);
});

test("Stripe unreachable: 502, still due; the retry refunds once", async () => {
  const { payer, payment, intent } = await fundedPayment(20000);
  await resolved(payer, payment, "refund");
  const owed = await obligation(payment);
  const down = await withStripeUnreachable(() => send({ refund_obligation_id: owed.id }));
  assertEquals(down.status, 502);
  const [failed] = down.body.results as Record<string, unknown>[];
  assertEquals([failed.stage, failed.code], ["refund", "processor_unavailable"]);
  assertEquals((await obligation(payment)).status, "due");
  assertEquals((await stripe.refunds.list({ payment_intent: intent })).data.length, 0);

  const retried = await send({ refund_obligation_id: owed.id });
  assertEquals(retried.status, 200, JSON.stringify(retried.body));
  assertEquals((await stripe.refunds.list({ payment_intent: intent })).data.length, 1);
});

test("a charge the database refused is recovered and its refund sent, under its key", async () => {
  const payer = await makeUser("hana");
  const payee = await makeUser("carl", true);
  const payment = await pendingPayment(payer, payee, 99000);
  // Stripe charged 15000 naming a payment of 99000: its success is refused and reported.
  const card = await testCard("4242424242424242");
  const pi = await stripe.paymentIntents.create({
    amount: 15000,
    currency: "usd",
    payment_method: card.id,
    confirm: true,
    metadata: { milestone_payment_id: payment },
  });
  const refused = await deliver("payment_intent.succeeded", { ...pi });
  assertEquals(refused.body.status, "refused", JSON.stringify(refused.body));
  const [{ id: inconsistency }] = await db`
    select id::text from public.processor_inconsistencies where processor_object_id = ${pi.id}
  `;

  const answer = await send({});
  const mine = (answer.body.recoveries as Record<string, unknown>[]).find((r) =>
    r.inconsistency_id === inconsistency
  );
  assertEquals([mine?.status, mine?.recovery], ["recovered", "refund"]);
  const sent = (answer.body.results as Record<string, unknown>[]).find((r) =>
    r.payment_intent_id === pi.id
  );
  assertEquals(sent?.status, "sent", "the recovery's refund is sent in the same run");
  const refund = await stripe.refunds.retrieve(sent?.refund_id as string);
  assertEquals([refund.amount, refund.metadata?.processor_inconsistency_id], [
    15000,
    inconsistency,
  ]);
  const [row] = await db`
    select status, idempotency_key from private.refund_obligations
    where processor_inconsistency_id = ${inconsistency}
  `;
  assertEquals(
    [row.status, row.idempotency_key],
    ["sent", `processor_inconsistency:${inconsistency}:refund`],
  );
  const charge = await stripe.charges.retrieve(refund.charge as string);
  assertEquals((await deliver("charge.refunded", { ...charge })).body.status, "processed");
  const [settled] = await db`
    select i.resolution is not null as resolved, o.status from public.processor_inconsistencies as i
    join private.refund_obligations as o on o.processor_inconsistency_id = i.id
    where i.id = ${inconsistency}
  `;
  assertEquals([settled.resolved, settled.status], [true, "confirmed"]);
  assertEquals(await paymentStatus(payment), "pending", "nothing funded the payment");
});
