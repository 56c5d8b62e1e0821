// The database as the functions use it: one transaction per request, set up as PostgREST
// sets it up, and refusals answered (and committed) as PostgREST answers them.
import { assertEquals, assertRejects } from "./assert.ts";
import type { Caller } from "../_shared/auth.ts";
import { Refused, requestContext, rpc, setRole, transaction } from "../_shared/db.ts";
import { statusForSqlState } from "../_shared/errors.ts";
import { db, makeUser, pendingPayment, test, userClaims } from "./helpers.ts";

function callerFor(userId: string, aal: "aal1" | "aal2" = "aal2"): Caller {
  return { claims: userClaims(userId, aal), role: "authenticated", userId };
}

function req(): Request {
  return new Request("http://127.0.0.1/functions/v1/milestone-payments", {
    method: "post",
    headers: { "X-Forwarded-For": "203.0.113.7", "User-Agent": "payguard-test" },
  });
}

test("a transaction carries the caller's role, claims, method, path and lower-cased headers", async () => {
  const user = await makeUser("hana");
  const seen = await transaction(requestContext(req(), callerFor(user)), async (tx) => {
    const [row] = await tx`
      select current_user as role, auth.uid() as uid, auth.jwt() ->> 'aal' as aal,
        current_setting('request.method') as method, current_setting('request.path') as path,
        current_setting('request.headers')::jsonb as headers,
        current_setting('search_path') as search_path
    `;
    return row;
  });
  assertEquals(seen.role, "authenticated");
  assertEquals(seen.uid, user);
  assertEquals(seen.aal, "aal2");
  assertEquals(seen.method, "POST");
  assertEquals(seen.path, "/functions/v1/milestone-payments");
  assertEquals(seen.headers["x-forwarded-for"], "203.0.113.7");
  assertEquals(seen.headers["user-agent"], "payguard-test");
  assertEquals(seen.search_path, "public, extensions");
});

test("row-level security applies: a user sees only their own rows", async () => {
  const hana = await makeUser("hana");
  const carl = await makeUser("carl", true);
  const stranger = await makeUser("stranger");
  const payment = await pendingPayment(hana, carl);
  const count = (user: string) =>
    transaction(requestContext(req(), callerFor(user)), async (tx) => {
      const [row] =
        await tx`select count(*)::int as n from public.milestone_payments where id = ${payment}`;
      return row.n as number;
    });
  assertEquals(await count(hana), 1, "the payer sees the payment");
  assertEquals(await count(stranger), 0, "a stranger does not");
});

test("switching to payment_service keeps the caller's claims", async () => {
  const user = await makeUser("hana");
  const seen = await transaction(requestContext(req(), callerFor(user)), async (tx) => {
    await setRole(tx, "payment_service");
    const [row] = await tx`
      select current_user as role, current_setting('request.jwt.claims')::jsonb ->> 'sub' as uid
    `;
    return row;
  });
  assertEquals(seen, { role: "payment_service", uid: user });
});

test("a statement that raises rolls the whole transaction back", async () => {
  const user = await makeUser("hana");
  const before = await db`select count(*)::int as n from public.notifications`;
  await assertRejects(
    () =>
      transaction(requestContext(req(), callerFor(user)), async (tx) => {
        await setRole(tx, "payment_service");
        await tx`select 1/0`;
      }),
    Error,
  );
  const after = await db`select count(*)::int as n from public.notifications`;
  assertEquals(after, before);
});

test("an RPC's refusal in response.status is answered with its status and body, and its record is committed", async () => {
  const hana = await makeUser("hana");
  const carl = await makeUser("carl", true);
  const payment = await pendingPayment(hana, carl);
  const refusals = async () => {
    const [row] = await db`
      select count(*)::int as n from public.payment_audit_logs
      where not success and user_id = ${hana} and entity_id = ${payment}
    `;
    return row.n as number;
  };
  const refusalsBefore = await refusals();
  const error = await assertRejects(
    () =>
      transaction(
        requestContext(req(), callerFor(hana)),
        (tx) =>
          rpc(tx, "release_milestone_payment", [[payment, "uuid"], ["key-release-1", "text"]]),
      ),
    Refused,
  );
  assertEquals(error.status, 409);
  assertEquals(error.body.code, "PT409");
  assertEquals(
    error.body.message,
    `milestone payment ${payment} cannot go from pending to released`,
  );
  assertEquals(await refusals(), refusalsBefore + 1, "the refusal's audit row was committed");
});

test("SQLSTATEs map to PostgREST's statuses", () => {
  const cases: [string, number][] = [
    ["PT402", 402],
    ["PT403", 403],
    ["PT404", 404],
    ["PT409", 409],
    ["PT422", 422],
    ["PT429", 429],
    ["42501", 403],
    ["23505", 409],
    ["23503", 409],
    ["23514", 400],
    ["22P02", 400],
    ["P0001", 400],
    ["42883", 404],
    ["42P01", 404],
    ["40001", 500],
    ["40P01", 500],
    ["08006", 503],
    ["53300", 503],
    ["57014", 503],
    ["XX000", 500],
  ];
  for (const [code, status] of cases) assertEquals(statusForSqlState(code), status, code);
  assertEquals(statusForSqlState("42501", "anon"), 401);
  return Promise.resolve();
});
