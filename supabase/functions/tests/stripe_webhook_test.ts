// stripe-webhook: only events signed with the endpoint's secret, within 300 s, are applied;
// anything else is a 400 and writes nothing. Verified events are applied once.
import { assert_, assertEquals, assertMatch } from "./assert.ts";
import webhook from "../stripe-webhook/index.ts";
import { closeDatabase } from "../_shared/db.ts";
import {
  call,
  db,
  eventBody,
  makeUser,
  paymentStatus,
  pendingPayment,
  reportedInconsistencies,
  signature,
  stripeId,
  test,
} from "./helpers.ts";
import { accountsOf, lookupOf, recordAccount } from "./tokens.ts";
import { b64encode, KeySet } from "../_shared/envelope.ts";
import { lookup } from "../_shared/token_index.ts";
import { storedLookupOf } from "../_shared/tokens.ts";

/** Deliver `payload` with `header` as its Stripe-Signature (none when undefined). */
export function deliver(payload: string, header?: string) {
  return call(webhook, "stripe-webhook", {
    body: payload,
    headers: header === undefined ? {} : { "stripe-signature": header },
  });
}

async function eventCount(): Promise<number> {
  const [row] = await db`select count(*)::int as n from public.webhook_events`;
  return row.n as number;
}

/** `attempt` is refused with 400 and `code`, and no event is recorded. */
async function refusedAndNothingWritten(
  attempt: () => Promise<{ status: number; body: Record<string, unknown> }>,
  code: string,
): Promise<Record<string, unknown>> {
  const before = await eventCount();
  const { status, body } = await attempt();
  assertEquals(status, 400);
  assertEquals(body.code, code);
  assertEquals(await eventCount(), before, "nothing is written");
  return body;
}

const customer = { id: "cus_unknown000001", object: "customer" };

test("an event without a Stripe-Signature is a 400", async () => {
  const payload = eventBody("customer.created", customer);
  await refusedAndNothingWritten(() => deliver(payload), "signature_missing");
});

test("a malformed Stripe-Signature is a 400", async () => {
  const payload = eventBody("customer.created", customer);
  for (
    const header of ["garbage", "t=abc,v1=", "v1=deadbeef", `t=${Math.floor(Date.now() / 1000)}`]
  ) {
    await refusedAndNothingWritten(() => deliver(payload, header), "signature_invalid");
  }
});

test("a signature made with another secret is a 400", async () => {
  const payload = eventBody("customer.created", customer);
  const header = await signature(payload, { secret: "whsec_someoneelse" });
  await refusedAndNothingWritten(() => deliver(payload, header), "signature_invalid");
});

/** Run `body` with the environment variables of `values` set, then restore them. */
async function withEnv(values: Record<string, string>, body: () => Promise<void>) {
  const before = Object.fromEntries(Object.keys(values).map((k) => [k, Deno.env.get(k)]));
  for (const [name, value] of Object.entries(values)) Deno.env.set(name, value);
  try {
    await body();
  } finally {
    for (const [name, value] of Object.entries(before)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}

const PLATFORM_SECRET = Deno.env.get("STRIPE_WEBHOOK_SECRET")!;

test("each secret of a comma-separated STRIPE_WEBHOOK_SECRET verifies; no other does", async () => {
  await withEnv(
    { STRIPE_WEBHOOK_SECRET: `${PLATFORM_SECRET}, whsec_connectendpoint` },
    async () => {
      for (const secret of [PLATFORM_SECRET, "whsec_connectendpoint"]) {
        const payload = eventBody("customer.created", customer);
        const { status, body } = await deliver(payload, await signature(payload, { secret }));
        assertEquals(status, 200, JSON.stringify(body));
        assertEquals(body.status, "ignored");
      }
      const payload = eventBody("customer.created", customer);
      const header = await signature(payload, { secret: "whsec_someoneelse" });
      await refusedAndNothingWritten(() => deliver(payload, header), "signature_invalid");
    },
  );
});

test("STRIPE_CONNECT_WEBHOOK_SECRET verifies the Connect endpoint's events too", async () => {
  await withEnv({ STRIPE_CONNECT_WEBHOOK_SECRET: "whsec_connectonly" }, async () => {
    const payload = eventBody("customer.created", customer);
    const connect = await deliver(
      payload,
      await signature(payload, { secret: "whsec_connectonly" }),
    );
    assertEquals(connect.status, 200, JSON.stringify(connect.body));
    const other = eventBody("customer.created", customer);
    const platform = await deliver(other, await signature(other));
    assertEquals(platform.status, 200, "the platform's secret still verifies");
    const stale = eventBody("customer.created", customer);
    const header = await signature(stale, {
      secret: "whsec_connectonly",
      timestamp: Math.floor(Date.now() / 1000) - 301,
    });
    await refusedAndNothingWritten(() => deliver(stale, header), "signature_invalid");
  });
});

test("a forged body under a real signature is a 400", async () => {
  const signed = eventBody("customer.created", customer);
  const header = await signature(signed);
  const forged = signed.replace("customer.created", "payout.paid");
  await refusedAndNothingWritten(() => deliver(forged, header), "signature_invalid");
});

test("a body re-serialised (not the raw bytes signed) is a 400", async () => {
  const signed = eventBody("customer.created", customer);
  const header = await signature(signed);
  const compact = JSON.stringify(JSON.parse(signed));
  await refusedAndNothingWritten(() => deliver(compact, header), "signature_invalid");
});

test("a signature older than 300 s is a 400 that says the timestamp is outside tolerance", async () => {
  const payload = eventBody("customer.created", customer);
  const header = await signature(payload, { timestamp: Math.floor(Date.now() / 1000) - 301 });
  const body = await refusedAndNothingWritten(() => deliver(payload, header), "signature_invalid");
  assertMatch(String(body.reason), /tolerance/i);
});

test("a signature from the future beyond 300 s is a 400", async () => {
  const payload = eventBody("customer.created", customer);
  const header = await signature(payload, { timestamp: Math.floor(Date.now() / 1000) + 600 });
  await refusedAndNothingWritten(() => deliver(payload, header), "signature_invalid");
});

test("a GET is a 405", async () => {
  const { status, body } = await call(webhook, "stripe-webhook", { method: "GET" });
  assertEquals(status, 405);
  assertEquals(body.code, "method_not_allowed");
});

test("a verified event of an unhandled type is recorded as ignored, once", async () => {
  const id = stripeId("evt");
  const payload = eventBody("customer.created", customer, id);
  const first = await deliver(payload, await signature(payload));
  assertEquals(first.status, 200, JSON.stringify(first.body));
  assertEquals(first.body.event_id, id);
  assertEquals(first.body.status, "ignored");
  const again = await deliver(payload, await signature(payload));
  assertEquals(again.status, 200, "a replay is acknowledged");
  assertEquals(again.body.status, "duplicate", "and changes nothing");
  const rows = await db`select status::text from public.webhook_events where id = ${id}`;
  assertEquals(rows.map((r) => r.status), ["ignored"]);
});

test("every v1 signature is tried: a valid one beside a wrong one is accepted", async () => {
  const payload = eventBody("customer.created", customer);
  const good = await signature(payload);
  const t = /t=(\d+)/.exec(good)![1];
  const v1 = /v1=([0-9a-f]+)/.exec(good)![1];
  const header = `t=${t},v1=${"0".repeat(64)},v1=${v1}`;
  const { status, body } = await deliver(payload, header);
  assertEquals(status, 200);
  assertEquals(body.status, "ignored");
});

/** A signed payment_intent.succeeded for `payment`, with `amount` and `currency`. */
async function succeeded(payment: string, amount: number, currency = "usd") {
  const intent = stripeId("pi");
  const payload = eventBody("payment_intent.succeeded", {
    id: intent,
    object: "payment_intent",
    amount,
    amount_received: amount,
    currency,
    status: "succeeded",
    metadata: { milestone_payment_id: payment },
  });
  return { intent, payload, header: await signature(payload) };
}

async function aPendingPayment(amount = 40000): Promise<string> {
  return await pendingPayment(await makeUser("hana"), await makeUser("carl", true), amount);
}

test("the same event delivered twice at once is applied once", async () => {
  const payment = await aPendingPayment();
  const { payload, header } = await succeeded(payment, 40000);
  const answers = await Promise.all([deliver(payload, header), deliver(payload, header)]);
  assertEquals(answers.map((a) => a.status), [200, 200]);
  assertEquals(answers.map((a) => a.body.status).sort(), ["duplicate", "processed"]);
  assertEquals(await paymentStatus(payment), "funded");
  const [row] = await db`
    select count(*)::int as n from public.webhook_events where id = ${JSON.parse(payload).id}
  `;
  assertEquals(row.n, 1);
});

test("a valid event for another amount is refused, acknowledged, and reported", async () => {
  const payment = await aPendingPayment(40000);
  const { intent, payload, header } = await succeeded(payment, 39999);
  const { status, body } = await deliver(payload, header);
  assertEquals(status, 200, "acknowledged: Stripe must not deliver it again");
  assertEquals(body.status, "refused");
  assertEquals(await paymentStatus(payment), "pending", "nothing funded");
  assertEquals((await reportedInconsistencies(intent)).length, 1);
});

test("a valid event for another currency is refused and acknowledged", async () => {
  const payment = await aPendingPayment(40000);
  const { payload, header } = await succeeded(payment, 40000, "eur");
  const { status, body } = await deliver(payload, header);
  assertEquals([status, body.status], [200, "refused"]);
  assertEquals(await paymentStatus(payment), "pending");
});

test(
  "out of order: a refund before the charge's success is acknowledged, never a 5xx",
  async () => {
    const payment = await aPendingPayment(40000);
    const { intent, payload, header } = await succeeded(payment, 40000);
    const refund = eventBody("charge.refunded", {
      id: stripeId("ch"),
      object: "charge",
      amount: 40000,
      amount_refunded: 40000,
      currency: "usd",
      refunded: true,
      payment_intent: intent,
      metadata: { milestone_payment_id: payment },
    });
    const first = await deliver(refund, await signature(refund));
    assertEquals(first.status, 200, JSON.stringify(first.body));
    const second = await deliver(payload, header);
    assertEquals(second.status, 200, JSON.stringify(second.body));
    assertEquals(
      [first.body.status, second.body.status].every((s) =>
        ["processed", "refused"].includes(String(s))
      ),
      true,
      "each is applied or refused by the database's transitions",
    );
  },
);

test("the database unreachable: 503, so that Stripe delivers again", async () => {
  const url = Deno.env.get("SUPABASE_DB_URL")!;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await closeDatabase();
  Deno.env.set("SUPABASE_DB_URL", `postgresql://postgres:postgres@127.0.0.1:${port}/nowhere`);
  try {
    const payload = eventBody("customer.created", { id: "cus_unknown000002" });
    const { status, body } = await deliver(payload, await signature(payload));
    assertEquals(status, 503);
    assertEquals(body.code, "database_unavailable");
  } finally {
    await closeDatabase();
    Deno.env.set("SUPABASE_DB_URL", url);
  }
});

test(
  "an event the database could not record is a 500, and is recorded on the next delivery",
  async () => {
    const payload = eventBody("customer.created", { id: "cus_unknown000003" });
    const id = JSON.parse(payload).id;
    await db`revoke execute on function public.apply_stripe_event(jsonb) from payment_service`;
    let failed;
    try {
      failed = await deliver(payload, await signature(payload));
    } finally {
      await db`grant execute on function public.apply_stripe_event(jsonb) to payment_service`;
    }
    assertEquals(failed.status, 500);
    assertEquals(failed.body.code, "event_not_applied");
    assertEquals((await db`select 1 from public.webhook_events where id = ${id}`).length, 0);
    const again = await deliver(payload, await signature(payload));
    assertEquals([again.status, again.body.status], [200, "ignored"]);
  },
);

test(
  "a NUL the payer typed: the event is applied with it replaced, once, and says so",
  async () => {
    const payment = await aPendingPayment(40000);
    const { intent, payload } = await succeeded(payment, 40000);
    const event = JSON.parse(payload);
    event.data.object.description = "Kitchen\u0000 cabinets";
    event.data.object.metadata["note\u0000"] = "x";
    const body = JSON.stringify(event);
    assertMatch(body, /\\u0000/, "the body carries the escape jsonb refuses");
    const first = await deliver(body, await signature(body));
    assertEquals([first.status, first.body.status], [200, "processed"], JSON.stringify(first.body));
    assertEquals(await paymentStatus(payment), "funded");
    const [row] = await db`
      select payload -> 'data' -> 'object' ->> 'description' as description,
        payload -> 'data' -> 'object' -> 'metadata' ? ${"note\uFFFD"} as key_replaced,
        payload ->> 'payguard_replaced_characters' as replaced
      from public.webhook_events where id = ${event.id}
    `;
    assertEquals(
      [row.description, row.key_replaced, row.replaced],
      ["Kitchen\uFFFD cabinets", true, "2"],
      "the stored payload holds the replacement characters and counts them",
    );
    const again = await deliver(body, await signature(body));
    assertEquals([again.status, again.body.status], [200, "duplicate"]);
    assertEquals((await reportedInconsistencies(intent)).length, 0);
  },
);

test("a lone surrogate: the event is recorded with it replaced", async () => {
  const payload = eventBody("customer.created", {
    id: stripeId("cus"),
    object: "customer",
    name: "@@",
  });
  const body = payload.replace('"@@"', '"Hana \\ud800 and \\udc00, \\ud83d\\ude00"');
  const { status, body: answer } = await deliver(body, await signature(body));
  assertEquals([status, answer.status], [200, "ignored"], JSON.stringify(answer));
  const [row] = await db`
    select payload -> 'data' -> 'object' ->> 'name' as name,
      payload ->> 'payguard_replaced_characters' as replaced
    from public.webhook_events where id = ${JSON.parse(payload).id}
  `;
  assertEquals(
    [row.name, row.replaced],
    ["Hana \uFFFD and \uFFFD, \u{1F600}", "2"],
    "only the unpaired halves are replaced; a pair is a character",
  );
});

test("an event with no such text and no token is stored exactly as Stripe sent it", async () => {
  const payload = eventBody("product.created", {
    id: stripeId("prod"),
    object: "product",
    name: "Hana \\u0000 literally, \u{1F600}",
  });
  const { status } = await deliver(payload, await signature(payload));
  assertEquals(status, 200);
  const [row] = await db`
    select payload = ${payload}::text::jsonb as same, payload ? 'payguard_replaced_characters' as marked
    from public.webhook_events where id = ${JSON.parse(payload).id}
  `;
  assertEquals([row.same, row.marked], [true, false]);
});

test(
  "an event the database cannot read at all is recorded as refused with its error, and acknowledged",
  async () => {
    const payload = eventBody("payment_intent.succeeded", {
      id: stripeId("pi"),
      object: "payment_intent",
      metadata: { deep: "@@" },
    });
    const depth = 200_000;
    const body = payload.replace('"@@"', "[".repeat(depth) + "]".repeat(depth));
    const id = JSON.parse(payload).id;
    const first = await deliver(body, await signature(body));
    assertEquals([first.status, first.body.status], [200, "refused"], JSON.stringify(first.body));
    const [row] = await db`
      select status::text, type, payload -> 'payguard_unreadable' ->> 'code' as code,
        payload ? 'data' as has_data
      from public.webhook_events where id = ${id}
    `;
    assertEquals([row.status, row.type, row.has_data], [
      "refused",
      "payment_intent.succeeded",
      false,
    ]);
    assertMatch(String(row.code), /^(22|54)/, "the database's error is kept with the event");
    const again = await deliver(body, await signature(body));
    assertEquals([again.status, again.body.status], [200, "duplicate"], "recorded once");
  },
);

test(
  "an event's processor tokens are kept as their lookups; its account is found by its lookup",
  async () => {
    const carl = await makeUser("carl", true);
    const account = stripeId("acct", 16);
    const bank = stripeId("ba", 16);
    await recordAccount(carl, account);
    const event = JSON.parse(eventBody("account.updated", {
      id: account,
      object: "account",
      payouts_enabled: true,
      external_accounts: { data: [{ id: bank, object: "bank_account", account }] },
    }));
    const payload = JSON.stringify({ ...event, account });
    const { status, body } = await deliver(payload, await signature(payload));
    assertEquals([status, body.status], [200, "processed"], JSON.stringify(body));
    const [row] = await db`
      select payload::text as payload from public.webhook_events where id = ${event.id}
    `;
    assert_(!/(acct|ba)_/.test(row.payload as string), "the stored event names no token");
    assert_((row.payload as string).includes(await lookupOf(account)), "but its lookup");
    assertEquals((await accountsOf(carl)).map((a) => a.verification_status), ["verified"]);
  },
);

test(
  "while the index key rotates, a token is matched by the lookup stored for it under either key",
  async () => {
    const older = KeySet.parse(`i-older:${b64encode(crypto.getRandomValues(new Uint8Array(32)))}`);
    const newer = KeySet.parse(`i-newer:${b64encode(crypto.getRandomValues(new Uint8Array(32)))}`);
    const both = KeySet.parse(
      `i-newer:${b64encode(newer.key("i-newer"))},i-older:${b64encode(older.key("i-older"))}`,
    );
    const stored = stripeId("acct", 16);
    const unknown = stripeId("acct", 16);
    await db`
      insert into public.processor_accounts (processor_account_id_lookup)
      values (${await lookup(older, stored)})
    `;
    const found = await db.begin(async (tx) => {
      await tx`select set_config('role', 'payment_service', true)`;
      return [
        await storedLookupOf(tx, stored, both),
        await storedLookupOf(tx, unknown, both),
        await storedLookupOf(tx, stored, newer),
      ];
    });
    assertEquals(found, [
      await lookup(older, stored),
      await lookup(newer, unknown),
      await lookup(newer, stored),
    ], "the stored one under the older key; else, and with one key, the current key's");
  },
);
