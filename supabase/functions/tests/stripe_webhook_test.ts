// stripe-webhook: only events signed with the endpoint's secret, within 300 s, are applied;
// anything else is a 400 and writes nothing. Verified events are applied once.
import { assertEquals, assertMatch } from "./assert.ts";
import webhook from "../stripe-webhook/index.ts";
import { call, db, eventBody, signature, test } from "./helpers.ts";

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
  const id = `evt_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
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
}, { needsBorderSql: true });

test("every v1 signature is tried: a valid one beside a wrong one is accepted", async () => {
  const payload = eventBody("customer.created", customer);
  const good = await signature(payload);
  const t = /t=(\d+)/.exec(good)![1];
  const v1 = /v1=([0-9a-f]+)/.exec(good)![1];
  const header = `t=${t},v1=${"0".repeat(64)},v1=${v1}`;
  const { status, body } = await deliver(payload, header);
  assertEquals(status, 200);
  assertEquals(body.status, "ignored");
}, { needsBorderSql: true });
