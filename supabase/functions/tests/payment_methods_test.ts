// payment-methods: a card is saved through a SetupIntent the function makes for the user's own
// customer and the client confirms with the card; only the card of a succeeded SetupIntent of
// the caller's customer, tokenised for it, is saved, with Stripe's brand, last4 and expiry;
// never a pm_ or cus_ of the client's choosing.
import { assert_, assertEquals, assertRejects } from "./assert.ts";
import { decrypt, EnvelopeError, KeySet } from "../_shared/envelope.ts";
import { INDEX_KEYS_VARIABLE, lookup } from "../_shared/token_index.ts";
import paymentMethods from "../payment-methods/index.ts";
import {
  authenticateSetup,
  call,
  confirmSetup,
  countedCalls,
  db,
  makeUser,
  saveCard,
  setRateCount,
  stripe,
  test,
  testCard,
  userToken,
  withStripeUnreachable,
} from "./helpers.ts";
import { customerOf, lookupOf } from "./tokens.ts";

test("without a token: 401 with a JSON body", async () => {
  const { status, body } = await call(paymentMethods, "payment-methods", { body: {} });
  assertEquals(status, 401);
  assertEquals(body.code, "PGRST302");
});

test("a malformed SetupIntent id is a 422 naming the field", async () => {
  const user = await makeUser("hana");
  for (
    const bad of [null, "", "pm_1234567", "seti_ab", 4242424242424242, "seti_12345678; drop"]
  ) {
    const { status, body } = await call(paymentMethods, "payment-methods", {
      token: await userToken(user),
      body: { setup_intent: bad },
    });
    assertEquals(status, 422, String(bad));
    assertEquals(body.field, "setup_intent");
  }
});

test(
  "a bare payment method is refused: 422, before anything is counted or Stripe is asked",
  async () => {
    const user = await makeUser("hana");
    const card = await testCard("4242424242424242");
    const counted = await countedCalls(user, "payment_methods.save");
    const { status, body } = await call(paymentMethods, "payment-methods", {
      token: await userToken(user),
      body: { payment_method: card.id },
    });
    assertEquals([status, body.code, body.field], [422, "setup_intent_required", "payment_method"]);
    assertEquals(await countedCalls(user, "payment_methods.save"), counted);
    assertEquals(await customerOf(user), null);
    assertEquals((await stripe.paymentMethods.retrieve(card.id)).customer, null, "not attached");
  },
);

test("a GET is a 405", async () => {
  const user = await makeUser("hana");
  const { status } = await call(paymentMethods, "payment-methods", {
    method: "GET",
    token: await userToken(user),
  });
  assertEquals(status, 405);
});

test("aal1 is refused before Stripe is asked: no customer, no SetupIntent, no row", async () => {
  const user = await makeUser("hana");
  const token = await userToken(user, "aal1");
  for (const body of [{}, { setup_intent: "seti_doesnotexist0001" }]) {
    const answer = await withStripeUnreachable(() =>
      call(paymentMethods, "payment-methods", { token, body })
    );
    assertEquals([answer.status, answer.body.code], [403, "PT403"], JSON.stringify(body));
  }
  assertEquals(await savedBy(user), 0);
  assertEquals(await customerOf(user), null);
});

test(
  "a card is saved with Stripe's brand, last4 and expiry, attached to the user's customer",
  async () => {
    const user = await makeUser("hana");
    const { card, setupIntent, status, body } = await saveCard(user);
    assertEquals(status, 201, JSON.stringify(body));
    assertEquals(body.user_id, user);
    assert_(
      !/(pm|cus)_/.test(JSON.stringify(body)),
      `the answer names no processor id: ${JSON.stringify(body)}`,
    );
    assertEquals(body.brand, "visa");
    assertEquals(body.last4, "4242");
    assertEquals(body.exp_month, 12);
    assertEquals(body.exp_year, 2034);
    assertEquals(body.type, "credit_card");
    const customer = await customerOf(user);
    assert_(customer?.startsWith("cus_"), "the customer was recorded");
    assertEquals((await stripe.paymentMethods.retrieve(card!.id)).customer, customer);
    assertEquals((await stripe.setupIntents.retrieve(setupIntent!)).customer, customer);
    const [row] = await db`
    select processor_payment_method_id_sealed as sealed,
      processor_payment_method_id_lookup as lookup, processor_customer_id_lookup as customer_lookup
    from public.payment_methods where id = ${body.id as string}
  `;
    // The card is stored sealed for its row, and found by its lookup.
    const place = {
      table: "payment_methods",
      column: "processor_payment_method_id",
      rowId: body.id as string,
    };
    assertEquals(await decrypt(KeySet.fromEnv(), row.sealed, place), card!.id);
    await assertRejects(
      () => decrypt(KeySet.fromEnv(), row.sealed, { ...place, rowId: crypto.randomUUID() }),
      EnvelopeError,
    );
    const index = KeySet.fromEnv(undefined, INDEX_KEYS_VARIABLE);
    assertEquals(row.lookup, await lookup(index, card!.id));
    assertEquals(row.customer_lookup, await lookup(index, customer!));
    const [recorded] = await db`
      select processor_customer_id_sealed as sealed, processor_customer_id_lookup as lookup
      from public.processor_customers where user_id = ${user}
    `;
    assertEquals(
      await decrypt(KeySet.fromEnv(), recorded.sealed, {
        table: "processor_customers",
        column: "processor_customer_id",
        rowId: user,
      }),
      customer,
    );
    assertEquals(recorded.lookup, row.customer_lookup);
  },
);

test("a second card reuses the user's customer", async () => {
  const user = await makeUser("hana");
  const first = await saveCard(user);
  const second = await saveCard(user, "5555555555554444");
  assertEquals([first.status, second.status], [201, 201]);
  assertEquals(second.body.last4, "4444");
  assertEquals(second.body.brand, second.card!.card?.brand, "the brand is Stripe's");
  const [count] =
    await db`select count(*)::int as n from public.processor_customers where user_id = ${user}`;
  assertEquals(count.n, 1);
  assertEquals(
    (await stripe.paymentMethods.retrieve(second.card!.id)).customer,
    await customerOf(user),
  );
});

/** A SetupIntent of `user`'s, asked for through the function: its id and client secret. */
async function setupIntentFor(user: string): Promise<{ id: string; secret: string }> {
  const { status, body } = await call(paymentMethods, "payment-methods", {
    token: await userToken(user),
    body: {},
  });
  assertEquals(status, 200, JSON.stringify(body));
  assert_(String(body.client_secret).startsWith(`${body.setup_intent_id}_secret_`));
  return { id: body.setup_intent_id as string, secret: body.client_secret as string };
}

async function savedBy(user: string): Promise<number> {
  const [rows] =
    await db`select count(*)::int as n from public.payment_methods where user_id = ${user}`;
  return rows.n as number;
}

test(
  "a card someone else tokenised is not saved: named bare, or confirmed into one's own SetupIntent",
  async () => {
    const victim = await testCard("4242424242424242");
    // Stripe's clock counts seconds: the SetupIntent below is made in a later one, as it is
    // when an id tokenised earlier has leaked.
    await new Promise((done) => setTimeout(done, 1050 - (Date.now() % 1000)));
    const mallory = await makeUser("mallory");
    const token = await userToken(mallory);
    const bare = await call(paymentMethods, "payment-methods", {
      token,
      body: { payment_method: victim.id },
    });
    assertEquals([bare.status, bare.body.code], [422, "setup_intent_required"]);
    // Mallory confirms a SetupIntent of her own with the victim's card id.
    const { id } = await setupIntentFor(mallory);
    await stripe.setupIntents.confirm(id, { payment_method: victim.id });
    const { status, body } = await call(paymentMethods, "payment-methods", {
      token,
      body: { setup_intent: id },
    });
    assertEquals(status, 403, JSON.stringify(body));
    assertEquals(
      body.message,
      "This card was not entered for this SetupIntent: confirm the SetupIntent with the card",
    );
    assertEquals(await savedBy(mallory), 0);
  },
);

test("another user's SetupIntent is refused: 403, nothing saved", async () => {
  const hana = await makeUser("hana");
  const mallory = await makeUser("mallory");
  const { setupIntent } = await saveCard(hana);
  await saveCard(mallory); // mallory has a customer of her own
  for (const user of [mallory, await makeUser("eve")]) {
    const { status, body } = await call(paymentMethods, "payment-methods", {
      token: await userToken(user),
      body: { setup_intent: setupIntent },
    });
    assertEquals([status, body.message], [403, "This SetupIntent was not made for you"]);
  }
  assertEquals(await savedBy(mallory), 1, "only her own card");
});

test("a SetupIntent not confirmed yet is a 409, nothing saved", async () => {
  const hana = await makeUser("hana");
  const { id } = await setupIntentFor(hana);
  const { status, body } = await call(paymentMethods, "payment-methods", {
    token: await userToken(hana),
    body: { setup_intent: id },
  });
  assertEquals([status, body.code, body.setup_intent_status], [
    409,
    "setup_incomplete",
    "requires_payment_method",
  ]);
  assertEquals(await savedBy(hana), 0);
});

test("a card that needs 3-D Secure is saved once the cardholder completed it", async () => {
  const hana = await makeUser("hana");
  const token = await userToken(hana);
  const { id, secret } = await setupIntentFor(hana);
  const { intent } = await confirmSetup(id, secret, "4000002500003155");
  assertEquals(intent?.status, "requires_action");
  const early = await call(paymentMethods, "payment-methods", {
    token,
    body: { setup_intent: id },
  });
  assertEquals([early.status, early.body.setup_intent_status], [409, "requires_action"]);
  assertEquals(await authenticateSetup(id), 200);
  const saved = await call(paymentMethods, "payment-methods", {
    token,
    body: { setup_intent: id },
  });
  assertEquals([saved.status, saved.body.last4], [201, "3155"]);
});

test("the same SetupIntent twice is a 409, one row", async () => {
  const user = await makeUser("hana");
  const { card, setupIntent } = await saveCard(user);
  const again = await call(paymentMethods, "payment-methods", {
    token: await userToken(user),
    body: { setup_intent: setupIntent },
  });
  assertEquals(again.status, 409);
  assertEquals(again.body.code, "23505");
  assert_(!/(pm|cus)_/.test(JSON.stringify(again.body)), JSON.stringify(again.body));
  const [rows] = await db`
    select count(*)::int as n from public.payment_methods
    where processor_payment_method_id_lookup = ${await lookupOf(card!.id)}
  `;
  assertEquals(rows.n, 1);
});

test("a SetupIntent Stripe does not know is a 422", async () => {
  const user = await makeUser("hana");
  await saveCard(user); // the user has a customer
  const { status, body } = await call(paymentMethods, "payment-methods", {
    token: await userToken(user),
    body: { setup_intent: "seti_doesnotexist000001" },
  });
  assertEquals(status, 422);
  assertEquals(body.code, "setup_intent_unknown");
});

test("a card Stripe declines at its setup is not saved: 409, the setup canceled", async () => {
  const user = await makeUser("hana");
  const { status, body } = await saveCard(user, "4000000000000002");
  assertEquals([status, body.code, body.setup_intent_status], [
    409,
    "setup_incomplete",
    "canceled",
  ]);
  assertEquals(await savedBy(user), 0);
});

test("Stripe unreachable is a 503 and nothing is saved", async () => {
  const user = await makeUser("hana");
  const token = await userToken(user);
  const { status, body } = await withStripeUnreachable(() =>
    call(paymentMethods, "payment-methods", { token, body: {} })
  );
  assertEquals(status, 503);
  assertEquals(body.code, "processor_unavailable");
  assertEquals(await customerOf(user), null);
  const setup = await setupIntentFor(user);
  const { intent } = await confirmSetup(setup.id, setup.secret, "4242424242424242");
  assertEquals(intent?.status, "succeeded");
  const named = await withStripeUnreachable(() =>
    call(paymentMethods, "payment-methods", { token, body: { setup_intent: setup.id } })
  );
  assertEquals([named.status, await savedBy(user)], [503, 0]);
});

test(
  "every request counts towards the limit before Stripe is asked: past 20 a minute, 429 and no Stripe call",
  async () => {
    const user = await makeUser("hana");
    const token = await userToken(user);
    const saveLimit = "payment_methods.save";
    const ask = {};
    // 19 counted in the window: the 20th request is still answered, Stripe asked, and counted.
    await setRateCount(user, saveLimit, 19);
    const counted = await countedCalls(user, saveLimit);
    const twentieth = await call(paymentMethods, "payment-methods", { token, body: ask });
    assertEquals(twentieth.status, 200, "Stripe was asked, and made a SetupIntent");
    assertEquals(await countedCalls(user, saveLimit), counted + 1, "counted");
    // 20 counted; Stripe unreachable now: an answer other than 503 was given without asking it.
    await setRateCount(user, saveLimit, 20);
    const full = await countedCalls(user, saveLimit);
    const past = await withStripeUnreachable(() =>
      call(paymentMethods, "payment-methods", { token, body: ask })
    );
    assertEquals(past.status, 429, JSON.stringify(past.body));
    assertEquals(past.body.code, "PT429");
    assertEquals(
      await countedCalls(user, saveLimit),
      full + 1,
      "each request counted, the refused one too",
    );
  },
);

test("a request that Stripe could not answer counts too: retries meet the limit", async () => {
  const user = await makeUser("hana");
  const token = await userToken(user);
  const saveLimit = "payment_methods.save";
  const save = () => call(paymentMethods, "payment-methods", { token, body: {} });
  const statuses = await withStripeUnreachable(async () => {
    const seen = [(await save()).status];
    // 19 counted in the window: the 20th unanswered request still goes through, and counts.
    await setRateCount(user, saveLimit, 19);
    const counted = await countedCalls(user, saveLimit);
    seen.push((await save()).status);
    assertEquals(await countedCalls(user, saveLimit), counted + 1, "counted");
    // 20 counted: the 21st is over the limit.
    await setRateCount(user, saveLimit, 20);
    seen.push((await save()).status);
    return seen;
  });
  assertEquals(statuses, [503, 503, 429]);
  assertEquals(await customerOf(user), null, "nothing recorded");
});
