// payment-methods: a card tokenised with Stripe is checked with Stripe, attached to the user's
// own customer, and saved with Stripe's brand, last4 and expiry; never a pm_ or cus_ of the
// client's choosing.
import { assert_, assertEquals } from "./assert.ts";
import paymentMethods from "../payment-methods/index.ts";
import {
  call,
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

async function customerOf(user: string): Promise<string | null> {
  const rows = await db`
    select processor_customer_id from public.processor_customers where user_id = ${user}
  `;
  return rows.length ? rows[0].processor_customer_id as string : null;
}

test("without a token: 401 with a JSON body", async () => {
  const { status, body } = await call(paymentMethods, "payment-methods", {
    body: { payment_method: "pm_123456789" },
  });
  assertEquals(status, 401);
  assertEquals(body.code, "PGRST302");
});

test("a malformed payment method id is a 422 naming the field", async () => {
  const user = await makeUser("hana");
  for (
    const bad of [undefined, "", "cus_1234567", "pm_ab", 4242424242424242, "pm_12345678; drop"]
  ) {
    const { status, body } = await call(paymentMethods, "payment-methods", {
      token: await userToken(user),
      body: { payment_method: bad },
    });
    assertEquals(status, 422, String(bad));
    assertEquals(body.field, "payment_method");
  }
});

test("a GET is a 405", async () => {
  const user = await makeUser("hana");
  const { status } = await call(paymentMethods, "payment-methods", {
    method: "GET",
    token: await userToken(user),
  });
  assertEquals(status, 405);
});

test("aal1 is refused before Stripe is asked: no customer, no row", async () => {
  const user = await makeUser("hana");
  const card = await testCard("4242424242424242");
  const { status, body } = await call(paymentMethods, "payment-methods", {
    token: await userToken(user, "aal1"),
    body: { payment_method: card.id },
  });
  assertEquals(status, 403);
  assertEquals(body.code, "PT403");
  const [rows] =
    await db`select count(*)::int as n from public.payment_methods where user_id = ${user}`;
  assertEquals(rows.n, 0);
  assertEquals((await stripe.paymentMethods.retrieve(card.id)).customer, null, "not attached");
});

test(
  "a card is saved with Stripe's brand, last4 and expiry, attached to the user's customer",
  async () => {
    const user = await makeUser("hana");
    const { card, status, body } = await saveCard(user);
    assertEquals(status, 201, JSON.stringify(body));
    assertEquals(body.user_id, user);
    assertEquals(body.processor_payment_method_id, card.id);
    assertEquals(body.brand, "visa");
    assertEquals(body.last4, "4242");
    assertEquals(body.exp_month, 12);
    assertEquals(body.exp_year, 2034);
    assertEquals(body.type, "credit_card");
    const customer = await customerOf(user);
    assert_(customer?.startsWith("cus_"), "the customer was recorded");
    assertEquals((await stripe.paymentMethods.retrieve(card.id)).customer, customer);
    const [row] = await db`
    select processor_customer_id from public.payment_methods where id = ${body.id as string}
  `;
    assertEquals(row.processor_customer_id, customer);
  },
);

test("a second card reuses the user's customer", async () => {
  const user = await makeUser("hana");
  const first = await saveCard(user);
  const second = await saveCard(user, "5555555555554444");
  assertEquals([first.status, second.status], [201, 201]);
  assertEquals(second.body.last4, "4444");
  assertEquals(second.body.brand, second.card.card?.brand, "the brand is Stripe's");
  const [count] =
    await db`select count(*)::int as n from public.processor_customers where user_id = ${user}`;
  assertEquals(count.n, 1);
  assertEquals(
    (await stripe.paymentMethods.retrieve(second.card.id)).customer,
    await customerOf(user),
  );
});

test(
  "another user's card (attached to their customer) is refused: 403, nothing saved",
  async () => {
    const hana = await makeUser("hana");
    const mallory = await makeUser("mallory");
    const { card } = await saveCard(hana);
    const { status, body } = await call(paymentMethods, "payment-methods", {
      token: await userToken(mallory),
      body: { payment_method: card.id },
    });
    assertEquals(status, 403);
    assertEquals(body.message, "This payment method belongs to another customer");
    const [rows] =
      await db`select count(*)::int as n from public.payment_methods where user_id = ${mallory}`;
    assertEquals(rows.n, 0);
  },
);

test("the same card twice is a 409, one row", async () => {
  const user = await makeUser("hana");
  const { card } = await saveCard(user);
  const again = await call(paymentMethods, "payment-methods", {
    token: await userToken(user),
    body: { payment_method: card.id },
  });
  assertEquals(again.status, 409);
  assertEquals(again.body.code, "23505");
  const [rows] = await db`
    select count(*)::int as n from public.payment_methods where processor_payment_method_id = ${card.id}
  `;
  assertEquals(rows.n, 1);
});

test("a payment method Stripe does not know is a 422", async () => {
  const user = await makeUser("hana");
  const { status, body } = await call(paymentMethods, "payment-methods", {
    token: await userToken(user),
    body: { payment_method: "pm_doesnotexist000001" },
  });
  assertEquals(status, 422);
  assertEquals(body.code, "payment_method_unknown");
});

test("a card Stripe declines at attachment is a 402, nothing saved", async () => {
  const user = await makeUser("hana");
  const { status, body } = await saveCard(user, "4000000000000002");
  assertEquals(status, 402);
  assertEquals(body.code, "card_declined");
  const [rows] =
    await db`select count(*)::int as n from public.payment_methods where user_id = ${user}`;
  assertEquals(rows.n, 0);
});

test("Stripe unreachable is a 503 and nothing is saved", async () => {
  const user = await makeUser("hana");
  const card = await testCard("4242424242424242");
  const token = await userToken(user);
  const { status, body } = await withStripeUnreachable(() =>
    call(paymentMethods, "payment-methods", { token, body: { payment_method: card.id } })
  );
  assertEquals(status, 503);
  assertEquals(body.code, "processor_unavailable");
  assertEquals(await customerOf(user), null);
});

test(
  "every request counts towards the limit before Stripe is asked: past 20 a minute, 429 and no Stripe call",
  async () => {
    const user = await makeUser("hana");
    const token = await userToken(user);
    const saveLimit = "payment_methods.save";
    const unknown = { payment_method: "pm_doesnotexist000001" };
    // 19 counted in the window: the 20th request is still answered, Stripe asked, and counted.
    await setRateCount(user, saveLimit, 19);
    const counted = await countedCalls(user, saveLimit);
    const twentieth = await call(paymentMethods, "payment-methods", { token, body: unknown });
    assertEquals(twentieth.status, 422, "Stripe was asked, and knew no such method");
    assertEquals(await countedCalls(user, saveLimit), counted + 1, "counted");
    // 20 counted; Stripe unreachable now: an answer other than 503 was given without asking it.
    await setRateCount(user, saveLimit, 20);
    const full = await countedCalls(user, saveLimit);
    const past = await withStripeUnreachable(() =>
      call(paymentMethods, "payment-methods", { token, body: unknown })
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
  const card = await testCard("4242424242424242");
  const saveLimit = "payment_methods.save";
  const save = () =>
    call(paymentMethods, "payment-methods", { token, body: { payment_method: card.id } });
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
