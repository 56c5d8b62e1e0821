/**
 * What the functions' tests share: a connection as `postgres` for fixtures (it owns the schema
 * and bypasses RLS), signed JWTs, requests to a handler, and a Stripe client on the local
 * Stripe. The environment comes from scripts/functions_test.py.
 */
import * as jose from "jose";
import postgres from "postgres";
import Stripe from "stripe";
import { required } from "../_shared/env.ts";
import paymentMethods from "../payment-methods/index.ts";

export const db = postgres(required("SUPABASE_DB_URL"), {
  max: 2,
  prepare: false,
  onnotice: () => {},
});

const secret = new TextEncoder().encode(required("SUPABASE_JWT_SECRET"));

/** A token signed with the project's secret, for `claims`. */
export async function sign(
  claims: jose.JWTPayload,
  options: { secret?: Uint8Array; expiresIn?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new jose.SignJWT({ iat: now, exp: now + (options.expiresIn ?? 3600), ...claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(options.secret ?? secret);
}

/** The claims Supabase Auth puts in a user's access token (as payguard.testing builds them). */
export function userClaims(userId: string, aal: "aal1" | "aal2" = "aal2"): jose.JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  const amr = aal === "aal2"
    ? [{ method: "totp", timestamp: now }, { method: "password", timestamp: now }]
    : [{ method: "password", timestamp: now }];
  return {
    iss: "http://127.0.0.1:54321/auth/v1",
    aud: "authenticated",
    sub: userId,
    email: "",
    role: "authenticated",
    aal,
    amr,
    session_id: crypto.randomUUID(),
    is_anonymous: false,
  };
}

/** A user's bearer token. */
export function userToken(userId: string, aal: "aal1" | "aal2" = "aal2"): Promise<string> {
  return sign(userClaims(userId, aal));
}

/** The service-role key's token. */
export function serviceToken(): Promise<string> {
  return sign({ iss: "supabase-demo", role: "service_role" });
}

type Handler = { fetch: (req: Request) => Promise<Response> };

/** Call a function's handler as Supabase's runtime would, and read its JSON answer. */
export async function call(
  handler: Handler,
  name: string,
  options: { token?: string; body?: unknown; method?: string; headers?: HeadersInit } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers = new Headers(options.headers);
  if (options.token) headers.set("authorization", `Bearer ${options.token}`);
  headers.set("content-type", "application/json");
  headers.set("x-forwarded-for", "203.0.113.7");
  const req = new Request(`http://127.0.0.1/functions/v1/${name}`, {
    method: options.method ?? "POST",
    headers,
    body: options.body === undefined
      ? undefined
      : typeof options.body === "string"
      ? options.body
      : JSON.stringify(options.body),
  });
  const res = await handler.fetch(req);
  const text = await res.text();
  if (!(res.headers.get("content-type") ?? "").startsWith("application/json")) {
    throw new Error(`${name} answered ${res.status} without JSON: ${text}`);
  }
  return { status: res.status, body: JSON.parse(text) };
}

/** Stripe as the tests drive it: the same local Stripe the functions use. */
export const stripe = new Stripe(
  required("STRIPE_SECRET_KEY"),
  (() => {
    const url = new URL(required("STRIPE_API_BASE"));
    return {
      httpClient: Stripe.createFetchHttpClient(),
      host: url.hostname,
      port: Number(url.port),
      protocol: "http" as const,
      maxNetworkRetries: 0,
    };
  })(),
);

/** A card PaymentMethod made on the local Stripe from a test card number. */
export async function testCard(number: string): Promise<Stripe.PaymentMethod> {
  const params = {
    type: "card",
    card: { number, exp_month: 12, exp_year: 2034, cvc: "123" },
  } as unknown as Stripe.PaymentMethodCreateParams;
  return await stripe.paymentMethods.create(params);
}

/** A new confirmed user; `contractor` gives the contractor role. */
export async function makeUser(name: string, contractor = false): Promise<string> {
  const id = `${name}-${crypto.randomUUID().slice(0, 8)}`;
  const metadata = contractor ? { role: "contractor" } : {};
  const [row] = await db`
    select tests.create_supabase_user(${id}, metadata => ${db.json(metadata)}) as id
  `;
  return row.id as string;
}

/** A project of `payer` built by `payee`, with escrow and a milestone; its pending payment. */
export async function pendingPayment(
  payer: string,
  payee: string,
  amountMinor = 40000,
  currency = "USD",
): Promise<string> {
  const [project] = await db`
    insert into public.projects (owner_id, contractor_id, title)
    values (${payer}, ${payee}, 'Kitchen remodel') returning id
  `;
  const [milestone] = await db`
    insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values (${project.id}, 1, 'Cabinets', ${amountMinor}, ${currency}) returning id
  `;
  await db`
    insert into public.escrow_accounts (user_id, project_id, currency)
    values (${payer}, ${project.id}, ${currency})
  `;
  const [payment] = await db.begin(async (tx) => {
    await tx`
      select set_config('role', 'authenticated', true),
        set_config('request.jwt.claims', ${JSON.stringify(userClaims(payer))}, true)
    `;
    return await tx`
      select public.create_milestone_payment(${milestone.id}, ${crypto.randomUUID()}) ->> 'id' as id
    `;
  });
  if (!payment.id) throw new Error("the fixture's milestone payment was not created");
  return payment.id as string;
}

/** Stop the shared connections, for the last test of a file. */
export async function closeAll(): Promise<void> {
  await db.end({ timeout: 5 });
}

/**
 * A Stripe-like id (`prefix_` and random letters). Letters only: hex digits from a UUID can
 * line up into 13 to 19 digits that pass Luhn, which the database rightly refuses as a card
 * number.
 */
export function stripeId(prefix: string, length = 24): string {
  const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return `${prefix}_${Array.from(bytes, (b) => letters[b % letters.length]).join("")}`;
}

/** A test that shares the connections above (so the resource sanitizers are off). */
export function test(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    fn,
    sanitizeOps: false,
    sanitizeResources: false,
  });
}

/**
 * Set `user`'s count of `operation` to `calls` (as postgres, a test fixture) in the current
 * window of its rate limit and in the next one, so that the user's next request is counted as
 * call `calls + 1` whichever of the two windows it falls in: a test of the limit neither waits
 * for nor depends on the clock (a request follows its fixture by far less than a window).
 */
export async function setRateCount(user: string, operation: string, calls: number): Promise<void> {
  const rows = await db`
    with rule as (
      select (private.setting('velocity_limits') -> r.rate_level ->> 'seconds')::int as seconds
      from private.rate_limit_rules as r where r.operation = ${operation}
    ),
    current_window as (
      select floor(extract(epoch from now()) / rule.seconds) * rule.seconds as start, rule.seconds
      from rule
    )
    insert into private.rate_limit_counters as c (user_id, operation, window_start, call_count)
    select ${user}, ${operation}, to_timestamp(w.start + n * w.seconds), ${calls}
    from current_window as w cross join (values (0), (1)) as next(n)
    on conflict (user_id, operation, window_start) do update set call_count = excluded.call_count
    returning c.window_start
  `;
  if (rows.length !== 2) throw new Error(`no rate limit for ${operation}`);
}

/** Every call of `operation` counted for `user`, over all windows. */
export async function countedCalls(user: string, operation: string): Promise<number> {
  const [row] = await db`
    select coalesce(sum(call_count), 0)::int as calls from private.rate_limit_counters
    where user_id = ${user} and operation = ${operation}
  `;
  return row.calls as number;
}

/** Poll `probe` until it answers true, for at most `ms`. */
export async function waitFor(probe: () => Promise<boolean>, ms = 10000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/**
 * Serve `handler` on a free local port with Deno.serve, as `deno serve` does, and have the local
 * Stripe deliver its webhooks there, signed with STRIPE_WEBHOOK_SECRET.
 */
export async function serveWebhooks(
  handler: Handler,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler.fetch);
  const url = `http://127.0.0.1:${server.addr.port}/functions/v1/stripe-webhook`;
  const base = required("STRIPE_API_BASE");
  const res = await fetch(`${base}/_config/webhooks/functions`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ url, secret: required("STRIPE_WEBHOOK_SECRET") }),
  });
  await res.body?.cancel();
  if (!res.ok) throw new Error(`the local Stripe refused the webhook endpoint: ${res.status}`);
  return { url, close: () => server.shutdown() };
}

/** The status of a milestone payment, read as postgres. */
export async function paymentStatus(id: string): Promise<string> {
  const [row] = await db`select status::text from public.milestone_payments where id = ${id}`;
  return row.status as string;
}

/** Point the functions' Stripe client at a port where nothing listens, during `fn`. */
export async function withStripeUnreachable<T>(fn: () => Promise<T>): Promise<T> {
  const base = required("STRIPE_API_BASE");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  Deno.env.set("STRIPE_API_BASE", `http://127.0.0.1:${port}`);
  try {
    return await fn();
  } finally {
    Deno.env.set("STRIPE_API_BASE", base);
  }
}

/**
 * SetupIntent `id` confirmed with the card `number`, as Stripe.js confirms it with the card
 * the user types (the card is tokenised by the confirmation): Stripe's answer, or the error it
 * answered with (a declined card).
 */
export async function confirmSetup(
  id: string,
  clientSecret: string,
  number: string,
): Promise<{ intent: Stripe.SetupIntent | null; error: unknown }> {
  const params = {
    client_secret: clientSecret,
    payment_method_data: {
      type: "card",
      card: { number, exp_month: 12, exp_year: 2034, cvc: "123" },
    },
  } as unknown as Stripe.SetupIntentConfirmParams;
  try {
    return { intent: await stripe.setupIntents.confirm(id, params), error: null };
  } catch (error) {
    return { intent: null, error };
  }
}

/**
 * The cardholder completes the 3-D Secure of SetupIntent `id` in Stripe.js (the extension's
 * trigger plays it); Stripe's status.
 */
export async function authenticateSetup(id: string): Promise<number> {
  const answer = await fetch(
    `${required("STRIPE_API_BASE")}/_test/setup_intents/${id}/authenticate`,
    { method: "POST", headers: { authorization: `Bearer ${required("STRIPE_SECRET_KEY")}` } },
  );
  await answer.body?.cancel();
  return answer.status;
}

/**
 * Save `number` (a test card) for `user` through the function, as the app does: a SetupIntent
 * asked for, confirmed with the card, then named. The function's last answer, with the card
 * (Stripe's PaymentMethod; null when none was made) and the SetupIntent's id.
 */
export async function saveCard(user: string, number = "4242424242424242") {
  const token = await userToken(user);
  const setup = await call(paymentMethods, "payment-methods", { token, body: {} });
  if (setup.status !== 200) return { card: null, setupIntent: null, ...setup };
  const setupIntent = setup.body.setup_intent_id as string;
  const { intent } = await confirmSetup(setupIntent, setup.body.client_secret as string, number);
  if (intent?.status === "requires_action") await authenticateSetup(setupIntent);
  const confirmed = await stripe.setupIntents.retrieve(setupIntent);
  const cardId = typeof confirmed.payment_method === "string"
    ? confirmed.payment_method
    : confirmed.payment_method?.id;
  const card = cardId ? await stripe.paymentMethods.retrieve(cardId) : null;
  const answer = await call(paymentMethods, "payment-methods", {
    token,
    body: { setup_intent: setupIntent },
  });
  return { card, setupIntent, ...answer };
}

/** The processor inconsistencies recorded about a processor object. */
export async function reportedInconsistencies(
  objectId: string,
): Promise<Record<string, unknown>[]> {
  return await db`
    select * from public.processor_inconsistencies where processor_object_id = ${objectId}
  `;
}

const WEBHOOK_SECRET = Deno.env.get("STRIPE_WEBHOOK_SECRET")!;
const webhookCrypto = Stripe.createSubtleCryptoProvider();

/** An event body as Stripe sends it. */
export function eventBody(type: string, object: Record<string, unknown>, id?: string): string {
  return JSON.stringify(
    {
      id: id ?? stripeId("evt"),
      object: "event",
      api_version: "2025-01-27.acacia",
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type,
      data: { object },
    },
    null,
    2,
  );
}

/** A Stripe-Signature header for `payload`. */
export async function signature(
  payload: string,
  options: { secret?: string; timestamp?: number } = {},
): Promise<string> {
  return await Stripe.webhooks.generateTestHeaderStringAsync({
    payload,
    secret: options.secret ?? WEBHOOK_SECRET,
    timestamp: options.timestamp ?? Math.floor(Date.now() / 1000),
    cryptoProvider: webhookCrypto,
  });
}
