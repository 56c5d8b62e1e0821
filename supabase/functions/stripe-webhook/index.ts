/**
 * stripe-webhook: Stripe's events, verified and applied once.
 *
 * POST with Stripe's raw body and its `Stripe-Signature` header. The signature is verified by
 * the SDK on the raw body (every v1 signature tried, 300 s tolerance, constant-time compare)
 * against each of the endpoints' signing secrets: `STRIPE_WEBHOOK_SECRET` (a comma-separated
 * list: Stripe signs the platform's endpoint and the Connect endpoint with different secrets,
 * and a rolled secret lives beside its successor for a while) and `STRIPE_CONNECT_WEBHOOK_SECRET`
 * when set. A missing, malformed, stale or wrong signature is a 400 and nothing is written. A verified event goes to `public.apply_stripe_event` as
 * `payment_service`, which records it once by its id and applies it in the same transaction:
 * processed, duplicate, ignored or refused are acknowledged (200); failed is a 500, so that
 * Stripe delivers it again. Text jsonb cannot hold (NUL, a lone surrogate) is replaced first
 * (storable.ts), and so is every processor token, by its lookup (lookups.ts): the database
 * matches accounts by lookup and keeps no token; an event the database still cannot read is recorded as refused by its id and
 * type alone, with the database's error, so that it is reported rather than delivered for ever.
 */
import { optional, required } from "../_shared/env.ts";
import { errorResponse, isPgError } from "../_shared/errors.ts";
import { serve } from "../_shared/serve.ts";
import { allowMethods, HttpError, json } from "../_shared/http.ts";
import { rpc, transaction } from "../_shared/db.ts";
import { cryptoProvider, Stripe } from "../_shared/stripe.ts";
import { withLookups } from "./lookups.ts";
import { storedLookupOf } from "../_shared/tokens.ts";
import { storableEvent } from "./storable.ts";

/** Seconds a signature's timestamp may be away from now. */
export const TOLERANCE_SECONDS = 300;

/** What apply_stripe_event answers. */
export interface Applied {
  event_id: string;
  type: string;
  status: "processed" | "duplicate" | "ignored" | "refused" | "failed";
  error?: { code: string; message: string };
}

const webhooks = Stripe.webhooks;

/**
 * The signing secrets an event may be signed with: the comma-separated `STRIPE_WEBHOOK_SECRET`
 * (at least one) and `STRIPE_CONNECT_WEBHOOK_SECRET`, blanks dropped.
 */
export function webhookSecrets(): string[] {
  const secrets = [
    ...required("STRIPE_WEBHOOK_SECRET").split(","),
    ...(optional("STRIPE_CONNECT_WEBHOOK_SECRET") ?? "").split(","),
  ].map((secret) => secret.trim()).filter((secret) => secret !== "");
  if (secrets.length === 0) {
    throw new Error("STRIPE_WEBHOOK_SECRET holds no secret; the function cannot run without it");
  }
  return secrets;
}

/** The event `raw` holds when `signature` verifies with one of `secrets`; else the last error. */
async function constructEvent(
  raw: string,
  signature: string,
  secrets: string[],
): Promise<Stripe.Event> {
  let refusal: unknown;
  for (const secret of secrets) {
    try {
      return await webhooks.constructEventAsync(
        raw,
        signature,
        secret,
        TOLERANCE_SECONDS,
        cryptoProvider,
      );
    } catch (error) {
      if (!(error instanceof Stripe.errors.StripeSignatureVerificationError)) throw error;
      refusal = error;
    }
  }
  throw refusal;
}

/** The verified event of `req`, or 400. */
async function verifiedEvent(req: Request): Promise<{ raw: string; event: Stripe.Event }> {
  const signature = req.headers.get("stripe-signature");
  if (!signature) {
    throw new HttpError(400, "signature_missing", "The Stripe-Signature header is missing");
  }
  const secrets = webhookSecrets();
  const raw = await req.text();
  try {
    const event = await constructEvent(raw, signature, secrets);
    // The SDK refuses timestamps older than the tolerance; one as far in the future was not
    // made by Stripe's clock either, and would stay replayable for longer.
    const timestamp = Number(/(?:^|,)\s*t=(\d+)/.exec(signature)?.[1]);
    if (timestamp - Math.floor(Date.now() / 1000) > TOLERANCE_SECONDS) {
      throw new HttpError(400, "signature_invalid", "The Stripe-Signature does not verify", {
        reason: "Timestamp outside the tolerance zone (in the future)",
      });
    }
    return { raw, event };
  } catch (error) {
    if (error instanceof HttpError) throw error;
    if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
      throw new HttpError(400, "signature_invalid", "The Stripe-Signature does not verify", {
        reason: error.message.split("\n")[0],
      });
    }
    throw new HttpError(400, "payload_invalid", "The body is not a Stripe event");
  }
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const { raw, event } = await verifiedEvent(req);
  if (typeof event.id !== "string" || typeof event.type !== "string") {
    throw new HttpError(400, "payload_invalid", "The body is not a Stripe event");
  }
  let applied: Applied;
  try {
    applied = await applyOrRecordUnreadable(req, raw, event);
  } catch (error) {
    // Whatever kept the event from being recorded (the database unreachable, a privilege
    // missing, a refusal the database did not record) is Stripe's cue to deliver it again.
    const answer = errorResponse(error);
    if (answer.status === 503) return answer;
    console.error("stripe event not applied", event.id, event.type, error);
    return json(500, {
      code: "event_not_applied",
      message: "The event was not recorded; deliver it again",
      event_id: event.id,
    });
  }
  return json(applied.status === "failed" ? 500 : 200, applied);
}

/**
 * True for an error the database raised because it could not read the event's text as jsonb
 * (data exceptions, class 22, such as 22P05 for an escape it does not support; a nesting past
 * its stack, class 54): the same text would fail the same way on every delivery.
 */
function unreadable(error: unknown): error is { code: string; message: string } {
  return isPgError(error) && (error.code.startsWith("22") || error.code.startsWith("54"));
}

/**
 * The database's error for an event, or, for one nested deeper than this function can walk
 * (to replace its text and its tokens), the error the database gives past its own stack
 * (54001); null for any other error.
 */
function unreadableError(error: unknown): { code: string; message: string } | null {
  if (unreadable(error)) return error;
  if (error instanceof RangeError) {
    return { code: "54001", message: "the event nests deeper than the function reads" };
  }
  return null;
}

/**
 * Apply the event, its unstorable characters replaced; should the database still be unable to
 * read it, record it by its id, type, creation time and account alone, with the database's
 * error (`payguard_unreadable`): apply_stripe_event refuses that (it has no data.object), so
 * the event is recorded once, acknowledged, and reported by `payguard reconcile`.
 */
async function applyOrRecordUnreadable(
  req: Request,
  raw: string,
  event: Stripe.Event,
): Promise<Applied> {
  try {
    return await apply(req, storableEvent(raw).text);
  } catch (error) {
    const refusal = unreadableError(error);
    if (refusal === null) throw error;
    console.error("stripe event unreadable by the database", event.id, event.type, refusal.code);
    const stub: Record<string, unknown> = {
      id: event.id,
      object: "event",
      type: event.type,
      created: event.created,
      payguard_unreadable: { code: refusal.code, message: refusal.message.slice(0, 500) },
    };
    if (typeof event.account === "string") stub.account = event.account;
    return await apply(req, JSON.stringify(stub));
  }
}

/**
 * Record and apply the event as payment_service, in one transaction, each processor token in
 * it replaced by the lookup by which the database stores it (lookups.ts).
 */
function apply(req: Request, raw: string): Promise<Applied> {
  const headers: Record<string, string> = {};
  req.headers.forEach((value, name) => {
    headers[name.toLowerCase()] = value;
  });
  return transaction({
    role: "payment_service",
    claims: { role: "payment_service" },
    method: "POST",
    path: new URL(req.url).pathname,
    headers,
  }, async (tx) => {
    const event = await withLookups(raw, (token) => storedLookupOf(tx, token));
    return await rpc<Applied>(tx, "apply_stripe_event", [[event, "jsonb"]]);
  });
}

export default serve(handle);
