// payout-methods: a payout method is an external account of the contractor's own connected
// account, as Stripe reports it, stored sealed; naming anyone else's tells nothing.
import { assert_, assertEquals } from "./assert.ts";
import payoutAccounts from "../payout-accounts/index.ts";
import payoutMethods from "../payout-methods/index.ts";
import { required } from "../_shared/env.ts";
import { decrypt, KeySet } from "../_shared/envelope.ts";
import { INDEX_KEYS_VARIABLE, lookup } from "../_shared/token_index.ts";
import { call, db, makeUser, stripeId, test, userToken, withStripeUnreachable } from "./helpers.ts";
import { accountOfRow } from "./tokens.ts";

/** A bank account added to `account` at the Stripe stand-in (the hosted onboarding's part). */
async function addBank(account: string, form: string): Promise<string> {
  const res = await fetch(
    `${required("STRIPE_API_BASE")}/_test/accounts/${account}/external_accounts`,
    {
      method: "POST",
      headers: {
        authorization: `Bearer ${required("STRIPE_SECRET_KEY")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: form,
    },
  );
  assertEquals(res.status, 200);
  return (await res.json()).id as string;
}

/** A contractor onboarded at Stripe, with a bank account added to their connected account. */
async function onboarded(name: string): Promise<{ user: string; account: string; bank: string }> {
  const user = await makeUser(name, true);
  const onboarding = await call(payoutAccounts, "payout-accounts", {
    token: await userToken(user),
    body: {},
  });
  assertEquals(onboarding.status, 201, JSON.stringify(onboarding.body));
  const account = await accountOfRow(onboarding.body.account_id as string);
  const bank = await addBank(account, "currency=usd&bank_name=First+Test+Bank&last4=6789");
  return { user, account, bank };
}

async function add(user: string, body: unknown, aal: "aal1" | "aal2" = "aal2") {
  return await call(payoutMethods, "payout-methods", { token: await userToken(user, aal), body });
}

async function methodsOf(user: string) {
  return await db`select * from public.payout_methods where user_id = ${user}`;
}

test("the contractor's own bank account is saved with Stripe's details, sealed: 201", async () => {
  const { user, account, bank } = await onboarded("carl");
  const { status, body } = await add(user, { external_account: bank, nickname: "Checking" });
  assertEquals(status, 201, JSON.stringify(body));
  assertEquals(
    [body.type, body.bank_name, body.last4, body.currency, body.nickname],
    ["bank_account", "First Test Bank", "6789", "USD", "Checking"],
  );
  assert_(!/(acct|ba)_/.test(JSON.stringify(body)), "the answer names no processor id");
  const [row] = await methodsOf(user);
  assertEquals(
    await decrypt(KeySet.fromEnv(), row.processor_external_account_id_sealed, {
      table: "payout_methods",
      column: "processor_external_account_id",
      rowId: row.id,
    }),
    bank,
  );
  const index = KeySet.fromEnv(undefined, INDEX_KEYS_VARIABLE);
  assertEquals(row.processor_external_account_id_lookup, await lookup(index, bank));
  assertEquals(row.processor_account_id_lookup, await lookup(index, account));
  const again = await add(user, { external_account: bank });
  assertEquals([again.status, again.body.code], [409, "23505"], "the same account twice");
  assertEquals((await methodsOf(user)).length, 1);
});

test("a second default is refused as the database words it, naming no account", async () => {
  const { user, account, bank } = await onboarded("carl");
  assertEquals((await add(user, { external_account: bank, is_default: true })).status, 201);
  const second = await addBank(account, "currency=usd&last4=1111");
  const answer = await add(user, { external_account: second, is_default: true });
  assertEquals([answer.status, answer.body.code], [409, "23505"], JSON.stringify(answer.body));
  assert_(answer.body.message !== "This payout method is already saved", "not a duplicate");
  assert_(!/(acct|ba)_/.test(JSON.stringify(answer.body)), JSON.stringify(answer.body));
  assertEquals((await add(user, { external_account: second })).status, 201);
});

test("another contractor's bank account, or one Stripe does not know: the same 403", async () => {
  const carl = await onboarded("carl");
  const eve = await onboarded("eve");
  assertEquals((await add(carl.user, { external_account: carl.bank })).status, 201);
  const theirs = await add(eve.user, { external_account: carl.bank });
  const unknown = await add(eve.user, { external_account: stripeId("ba") });
  assertEquals(theirs.status, 403, JSON.stringify(theirs.body));
  assertEquals(theirs.body, unknown.body, "another user's account and none answer alike");
  assertEquals((await methodsOf(eve.user)).length, 0);
});

test("aal1, no connected account, a malformed body: refused, nothing saved", async () => {
  const carl = await onboarded("carl");
  const atAal1 = await withStripeUnreachable(() =>
    add(carl.user, { external_account: carl.bank }, "aal1")
  );
  assertEquals([atAal1.status, atAal1.body.code], [403, "PT403"]);
  const dora = await makeUser("dora", true);
  const none = await add(dora, { external_account: carl.bank });
  assertEquals([none.status, none.body.code], [409, "account_required"]);
  for (
    const body of [
      {},
      { external_account: "acct_1234567" },
      { external_account: carl.bank, is_default: "yes" },
      { external_account: carl.bank, nickname: 7 },
    ]
  ) {
    const answer = await add(carl.user, body);
    assertEquals([answer.status, answer.body.code], [422, "invalid_field"], JSON.stringify(body));
  }
  assertEquals((await methodsOf(carl.user)).length, 0);
});

test("Stripe unreachable is a 503, nothing saved", async () => {
  const carl = await onboarded("carl");
  const answer = await withStripeUnreachable(() => add(carl.user, { external_account: carl.bank }));
  assertEquals(answer.status, 503, JSON.stringify(answer.body));
  assertEquals((await methodsOf(carl.user)).length, 0);
});
