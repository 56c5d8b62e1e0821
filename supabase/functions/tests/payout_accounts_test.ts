// payout-accounts: a contractor's connected account is made at Stripe once, under a key
// derived from the user, and recorded as theirs; every request counts, and the database's
// refusals (aal1, not a contractor, past the limit) come before any call to Stripe.
import { assert_, assertEquals, assertMatch } from "./assert.ts";
import payoutAccounts from "../payout-accounts/index.ts";
import { required } from "../_shared/env.ts";
import { decrypt, KeySet } from "../_shared/envelope.ts";
import { INDEX_KEYS_VARIABLE, lookup } from "../_shared/token_index.ts";
import {
  call,
  countedCalls,
  db,
  makeUser,
  setRateCount,
  stripe,
  test,
  userToken,
  withStripeUnreachable,
} from "./helpers.ts";
import { accountOfRow, accountsOf } from "./tokens.ts";

const RETURN_URL = required("PAYGUARD_ONBOARDING_RETURN_URL");
const REFRESH_URL = required("PAYGUARD_ONBOARDING_REFRESH_URL");

/** The accounts Stripe holds whose metadata names `user`. */
async function accountsAtStripe(user: string): Promise<string[]> {
  const list = await stripe.accounts.list({ limit: 100 });
  return list.data.filter((a) => a.metadata?.user_id === user).map((a) => a.id);
}

/** The onboarding links Stripe made for `account` (the extension's test listing). */
async function linksOf(account: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(
    `${required("STRIPE_API_BASE")}/_test/account_links?account=${account}`,
    { headers: { authorization: `Bearer ${required("STRIPE_SECRET_KEY")}` } },
  );
  return (await res.json()).data;
}

/** The Stripe id of the connected account an answer names by its row (`account_id`). */
async function stripeIdOf(body: Record<string, unknown>): Promise<string> {
  assert_(
    !/acct_/.test(JSON.stringify(body)),
    `the answer names no processor id: ${JSON.stringify(body)}`,
  );
  return await accountOfRow(body.account_id as string);
}

/** The connected accounts recorded as `user`'s, opened. */
function recorded(user: string) {
  return accountsOf(user);
}

async function onboard(user: string, body: unknown = {}, aal: "aal1" | "aal2" = "aal2") {
  return await call(payoutAccounts, "payout-accounts", { token: await userToken(user, aal), body });
}

test("without a token: 401", async () => {
  const { status, body } = await call(payoutAccounts, "payout-accounts", { body: {} });
  assertEquals(status, 401);
  assertEquals(body.code, "PGRST302");
});

test("a contractor's account is made once, recorded, and linked to onboarding: 201", async () => {
  const carl = await makeUser("carl", true);
  await db`update public.users set email = 'carl@example.com' where id = ${carl}`;
  const { status, body } = await onboard(carl);
  assertEquals(status, 201, JSON.stringify(body));
  const account = await stripeIdOf(body);
  assertMatch(account, /^acct_/);
  assertEquals(await accountsAtStripe(carl), [account]);
  const made = await stripe.accounts.retrieve(account);
  assertEquals([made.type, made.country, made.email], ["express", "US", "carl@example.com"]);
  const [row] = await recorded(carl);
  assertEquals(row.account, account, "recorded as carl's");
  const [sealed] = await db`
    select processor_account_id_sealed as sealed, processor_account_id_lookup as lookup
    from public.processor_accounts where id = ${body.account_id as string}
  `;
  assertEquals(
    await decrypt(KeySet.fromEnv(), sealed.sealed, {
      table: "processor_accounts",
      column: "processor_account_id",
      rowId: body.account_id as string,
    }),
    account,
    "recorded sealed for its row",
  );
  assertEquals(
    sealed.lookup,
    await lookup(KeySet.fromEnv(undefined, INDEX_KEYS_VARIABLE), account),
  );
  assertEquals(body.verification_status, row.verification_status);
  const links = await linksOf(account);
  assertEquals(links.length, 1);
  assertEquals(links[0].type, "account_onboarding");
  assertEquals([links[0].return_url, links[0].refresh_url], [RETURN_URL, REFRESH_URL]);
  assertEquals(body.onboarding_url, links[0].url);
  assert_(Date.parse(body.onboarding_url_expires_at as string) > Date.now(), "not yet expired");
});

test("an existing account is reused: 200, no second account, a new link", async () => {
  const carl = await makeUser("carl", true);
  const first = await onboard(carl);
  const again = await onboard(carl, { country: "DE" });
  assertEquals([first.status, again.status], [201, 200]);
  assertEquals(again.body.account_id, first.body.account_id);
  assertEquals(await accountsAtStripe(carl), [await stripeIdOf(first.body)]);
  assertEquals((await linksOf(await stripeIdOf(first.body))).length, 2);
});

test("concurrent requests make one account at Stripe: one 201, the others 200", async () => {
  const carl = await makeUser("carl", true);
  const answers = await Promise.all([onboard(carl), onboard(carl), onboard(carl), onboard(carl)]);
  assertEquals(answers.map((a) => a.status).sort(), [200, 200, 200, 201], JSON.stringify(answers));
  const ids = new Set(answers.map((a) => a.body.account_id));
  assertEquals(ids.size, 1, "the same account");
  const account = await stripeIdOf(answers[0].body);
  assertEquals(await accountsAtStripe(carl), [account]);
  assertEquals((await recorded(carl)).length, 1);
  assertEquals((await linksOf(account)).length, 4, "a link for each");
});

test("aal1 is refused before Stripe is asked: 403, no account", async () => {
  const carl = await makeUser("carl", true);
  const { status, body } = await withStripeUnreachable(() => onboard(carl, {}, "aal1"));
  assertEquals(status, 403, JSON.stringify(body));
  assertEquals(body.code, "PT403");
  assertEquals(await accountsAtStripe(carl), []);
  assertEquals(await recorded(carl), []);
});

test("a user who is not a contractor is refused before Stripe is asked: 403", async () => {
  const hana = await makeUser("hana");
  const { status, body } = await withStripeUnreachable(() => onboard(hana));
  assertEquals(status, 403, JSON.stringify(body));
  assertEquals(
    body.message,
    "only a contractor is paid out: a connected account is made for contractors",
  );
  assertEquals(await accountsAtStripe(hana), []);
  assertEquals(await recorded(hana), []);
});

test("a bad country or a URL outside the app is a 422, before anything is counted", async () => {
  const carl = await makeUser("carl", true);
  for (
    const [body, field] of [
      [{ country: "usa" }, "country"],
      [{ country: 840 }, "country"],
      [{ return_url: "https://evil.example/return" }, "return_url"],
      [{ refresh_url: "javascript:alert(1)" }, "refresh_url"],
      [{ return_url: "http://127.0.0.1:3000@evil.example/" }, "return_url"],
    ] as const
  ) {
    const answer = await onboard(carl, body);
    assertEquals(answer.status, 422, JSON.stringify(body));
    assertEquals(answer.body.field, field);
  }
  const [counted] = await db`
    select count(*)::int as n from private.rate_limit_counters
    where user_id = ${carl} and operation = 'processor_accounts.onboard'
  `;
  assertEquals(counted.n, 0);
  assertEquals(await accountsAtStripe(carl), []);
});

test("a URL of the app's own origin is taken from the request", async () => {
  const carl = await makeUser("carl", true);
  const back = new URL("/settings/payouts?step=done", RETURN_URL).href;
  const { status, body } = await onboard(carl, { return_url: back });
  assertEquals(status, 201, JSON.stringify(body));
  const [link] = await linksOf(await stripeIdOf(body));
  assertEquals([link.return_url, link.refresh_url], [back, REFRESH_URL]);
});

test("Stripe unreachable is a 503 and nothing is made; the retry makes exactly one", async () => {
  const carl = await makeUser("carl", true);
  const down = await withStripeUnreachable(() => onboard(carl));
  assertEquals(down.status, 503, JSON.stringify(down.body));
  assertEquals(down.body.code, "processor_unavailable");
  assertEquals(await accountsAtStripe(carl), []);
  assertEquals(await recorded(carl), []);
  const retry = await onboard(carl);
  assertEquals(retry.status, 201, JSON.stringify(retry.body));
  const again = await onboard(carl);
  assertEquals(again.status, 200);
  assertEquals(await accountsAtStripe(carl), [await stripeIdOf(retry.body)]);
});

test("Stripe's refusal is a 502, recorded; the next request makes the next attempt", async () => {
  const carl = await makeUser("carl", true);
  const refused = await onboard(carl, { country: "KP" });
  assertEquals(refused.status, 502, JSON.stringify(refused.body));
  assertEquals(refused.body.processor_code, "country_unsupported");
  const [attempt] = await db`
    select attempt, last_failure_code, country from private.payout_account_onboardings
    where user_id = ${carl}
  `;
  assertEquals(attempt, { attempt: 2, last_failure_code: "country_unsupported", country: null });
  // Stripe keeps the refusal for the first key; the next attempt has its own, and a country.
  const made = await onboard(carl, { country: "DE" });
  assertEquals(made.status, 201, JSON.stringify(made.body));
  assertEquals(
    (await stripe.accounts.retrieve(await stripeIdOf(made.body))).country,
    "DE",
  );
  assertEquals(await accountsAtStripe(carl), [await stripeIdOf(made.body)]);
});

test("an account Stripe made but the database did not record is found again", async () => {
  const carl = await makeUser("carl", true);
  await db.unsafe(`
    create function public.test_refuse_accounts() returns trigger language plpgsql as $$
    begin raise exception 'the database refuses it for this test' using errcode = 'XX000'; end $$;
    create trigger test_refuse_accounts before insert or update on public.processor_accounts
    for each row when (new.user_id = '${carl}') execute function public.test_refuse_accounts();
  `);
  let lost;
  try {
    lost = await onboard(carl);
  } finally {
    await db.unsafe(`
      drop trigger test_refuse_accounts on public.processor_accounts;
      drop function public.test_refuse_accounts();
    `);
  }
  assertEquals(lost.status, 502, `${lost.status} ${JSON.stringify(lost.body)}`);
  assertEquals(lost.body.code, "account_not_recorded");
  assertEquals(await recorded(carl), []);
  const found = await onboard(carl);
  assertEquals(found.status, 200, JSON.stringify(found.body));
  assert_(!/acct_/.test(JSON.stringify(lost.body)), "the refusal names no processor id");
  assertEquals(await accountsAtStripe(carl), [await stripeIdOf(found.body)]);
  assertEquals((await recorded(carl)).length, 1);
});

test(
  "every request counts before Stripe is asked: past 20 a minute, 429 and no Stripe call",
  async () => {
    const carl = await makeUser("carl", true);
    const limit = "processor_accounts.onboard";
    assertEquals((await onboard(carl)).status, 201);
    assertEquals(await countedCalls(carl, limit), 1, "the request counted");
    const account = (await recorded(carl))[0].account;
    // The 20th request of the window is answered, and asks Stripe.
    await setRateCount(carl, limit, 19);
    assertEquals((await onboard(carl)).status, 200);
    assertEquals((await linksOf(account)).length, 2, "each allowed request asked Stripe");
    // The 21st is refused; Stripe unreachable now: an answer other than 503 was given
    // without asking it.
    await setRateCount(carl, limit, 20);
    const past = await withStripeUnreachable(() => onboard(carl));
    assertEquals(past.status, 429, JSON.stringify(past.body));
    assertEquals(past.body.code, "PT429");
    assertEquals((await linksOf(account)).length, 2);
    const [counter] = await db`
      select max(call_count) as calls from private.rate_limit_counters
      where user_id = ${carl} and operation = ${limit}
    `;
    assertEquals(counter.calls, 21, "the refused request counted too");
  },
);
