/**
 * refunds: give payers back at Stripe what payguard decided to refund them, and recover the
 * charges the database refused or did not record.
 *
 * POST {} (every charge to recover, then every refund due) or {"refund_obligation_id": uuid}
 * (that refund only) with the project's service-role JWT, as `payment_service`:
 *
 * 1. Recovery (with {} only): `public.inconsistencies_to_recover()` names the open
 *    charge_refused / charge_unrecorded inconsistencies whose recovery is undecided, and
 *    `recover_processor_inconsistency` decides each: fund the payment with its charge while it
 *    is still fundable, else refund it (an obligation recorded in the same transaction).
 * 2. Refunds: `public.refunds_to_send()` names every refund payguard owes (a dispute resolved as
 *    a refund or a split, a recovered charge): PaymentIntent, amount, currency and the
 *    idempotency key of its attempt (`milestone_payment:<id>:refund`,
 *    `processor_inconsistency:<id>:refund`, then `…:<n>`). The function creates each refund
 *    (POST /v1/refunds) under that key, with metadata naming what it refunds, and records it
 *    (`record_refund_sent`); Stripe's charge.refunded then confirms it.
 *
 * Stripe keeps its first answer to a key, a refusal too: a refusal it answered (4xx) is recorded
 * (`record_refund_refusal`) and the refund is sent again, under its next key, after a wait; a
 * request that got no answer records nothing and is retried under the same key, which Stripe
 * runs at most once.
 *
 * Answers 200 {recoveries: [...], results: [...]} when every step succeeded, 502 with the same
 * body when one failed (each result says where), 404 when the named refund is not due, 401/403
 * without the service role.
 */
import { requireService } from "../_shared/auth.ts";
import { type RequestContext, requestContext, rpc, transaction } from "../_shared/db.ts";
import { isPgError } from "../_shared/errors.ts";
import { serve } from "../_shared/serve.ts";
import { allowMethods, HttpError, json, readJsonObject, uuidField } from "../_shared/http.ts";
import { isStripeError, stripe, stripeUnavailable } from "../_shared/stripe.ts";

/** A refund payguard owes, as refunds_to_send() names it. */
export interface DueRefund {
  refund_obligation_id: string;
  reason: string;
  milestone_payment_id: string | null;
  processor_inconsistency_id: string | null;
  payment_intent_id: string;
  amount_minor: number;
  currency: string;
  idempotency_key: string;
}

/** One refund's outcome. */
export interface RefundResult {
  refund_obligation_id: string;
  payment_intent_id: string;
  status: "sent" | "failed";
  refund_id: string | null;
  stage?: "refund" | "record_refund";
  code?: string;
  message?: string;
  detail?: string;
  /** For a refusal Stripe answered: recorded, and the refund is sent again under this key. */
  next_idempotency_key?: string;
}

/** One recovery's outcome: recover_processor_inconsistency's answer, or where it failed. */
export interface RecoveryResult {
  inconsistency_id: string;
  payment_intent_id: string;
  recovery?: "fund" | "refund" | null;
  resolved?: boolean;
  status: "recovered" | "failed";
  code?: string;
  message?: string;
}

function text(row: Record<string, unknown>, name: string): string | null {
  const value = row[name];
  return typeof value === "string" && value !== "" ? value : null;
}

/** A row of refunds_to_send(), checked: an exact integer amount, a pi_… intent. */
export function dueRefund(row: Record<string, unknown>): DueRefund {
  const id = text(row, "refund_obligation_id");
  const intent = text(row, "payment_intent_id");
  const key = text(row, "idempotency_key");
  const currency = text(row, "currency");
  const raw = row.amount_minor;
  const amount = typeof raw === "string" ? Number(raw) : raw;
  if (
    !id || !intent || !/^pi_/.test(intent) || !key || !currency || typeof amount !== "number" ||
    !Number.isSafeInteger(amount) || amount <= 0 || String(amount) !== String(raw)
  ) {
    throw new Error(`refunds_to_send() answered a row this function cannot refund: ${id}`);
  }
  return {
    refund_obligation_id: id,
    reason: String(row.reason),
    milestone_payment_id: text(row, "milestone_payment_id"),
    processor_inconsistency_id: text(row, "processor_inconsistency_id"),
    payment_intent_id: intent,
    amount_minor: amount,
    currency,
    idempotency_key: key,
  };
}

/**
 * A refusal that Stripe answered and keeps for its idempotency key (a 4xx other than an
 * authentication, idempotency or rate-limit error): retrying under the same key would only
 * replay it. Anything else (no answer, a 5xx, a 429) is retried under the same key.
 */
export function answeredRefusal(error: unknown): boolean {
  if (!isStripeError(error) || stripeUnavailable(error)) return false;
  if (error.type === "StripeIdempotencyError") return false;
  return error.statusCode !== undefined && [400, 402, 403, 404].includes(error.statusCode);
}

function databaseDetail(error: unknown): string {
  return isPgError(error)
    ? `${error.code}: ${error.message}`
    : error instanceof HttpError
    ? `${String(error.body.code)}: ${error.message}`
    : "database unreachable";
}

/** Decide the recovery of every charge the database refused or did not record. */
async function recoverCharges(context: RequestContext): Promise<RecoveryResult[]> {
  const rows = await transaction(context, async (tx) => {
    return await tx`select * from public.inconsistencies_to_recover()`;
  });
  const results: RecoveryResult[] = [];
  for (const row of rows) {
    const id = String(row.inconsistency_id);
    const intent = String(row.payment_intent_id);
    try {
      const answer = await transaction(
        context,
        (tx) =>
          rpc<{ recovery: "fund" | "refund" | null; resolved: boolean }>(
            tx,
            "recover_processor_inconsistency",
            [[id, "uuid"]],
          ),
      );
      results.push({
        inconsistency_id: id,
        payment_intent_id: intent,
        recovery: answer.recovery,
        resolved: answer.resolved,
        status: "recovered",
      });
    } catch (error) {
      results.push({
        inconsistency_id: id,
        payment_intent_id: intent,
        status: "failed",
        code: "recovery_failed",
        message: databaseDetail(error),
      });
    }
  }
  return results;
}

async function dueRefunds(context: RequestContext): Promise<DueRefund[]> {
  const rows = await transaction(context, async (tx) => {
    return await tx`select * from public.refunds_to_send()`;
  });
  return rows.map(dueRefund);
}

/** Create the refund at Stripe under its key, and record it (or Stripe's refusal). */
async function sendRefund(context: RequestContext, due: DueRefund): Promise<RefundResult> {
  const metadata: Record<string, string> = { refund_obligation_id: due.refund_obligation_id };
  if (due.milestone_payment_id) metadata.milestone_payment_id = due.milestone_payment_id;
  if (due.processor_inconsistency_id) {
    metadata.processor_inconsistency_id = due.processor_inconsistency_id;
  }
  let refundId: string;
  try {
    const refund = await stripe().refunds.create({
      payment_intent: due.payment_intent_id,
      amount: due.amount_minor,
      metadata,
    }, { idempotencyKey: due.idempotency_key });
    refundId = refund.id;
  } catch (error) {
    const code = stripeUnavailable(error)
      ? "processor_unavailable"
      : isStripeError(error)
      ? error.code ?? "processor_error"
      : "processor_error";
    const result: RefundResult = {
      refund_obligation_id: due.refund_obligation_id,
      payment_intent_id: due.payment_intent_id,
      status: "failed",
      refund_id: null,
      stage: "refund",
      code,
      message: "Stripe did not make the refund; it stays due and is sent again safely",
    };
    if (answeredRefusal(error)) {
      try {
        const recorded = await transaction(
          context,
          (tx) =>
            rpc<{ next_idempotency_key: string }>(tx, "record_refund_refusal", [
              [due.refund_obligation_id, "uuid"],
              [due.idempotency_key, "text"],
              [code, "text"],
              [(error as Error).message.slice(0, 500), "text"],
            ]),
        );
        result.next_idempotency_key = recorded.next_idempotency_key;
      } catch (recordError) {
        // Unrecorded, the next call sends the same key again and gets the same refusal: safe.
        console.error("record_refund_refusal", due.refund_obligation_id, recordError);
      }
    }
    return result;
  }
  try {
    await transaction(
      context,
      (tx) =>
        rpc(tx, "record_refund_sent", [[due.refund_obligation_id, "uuid"], [refundId, "text"]]),
    );
  } catch (error) {
    // Still due: the next call sends the same key, Stripe replays this refund, and it is
    // recorded then (charge.refunded confirms it meanwhile).
    return {
      refund_obligation_id: due.refund_obligation_id,
      payment_intent_id: due.payment_intent_id,
      status: "failed",
      refund_id: refundId,
      stage: "record_refund",
      code: "refund_not_recorded",
      message: "Stripe made the refund but the database did not record it; the next call " +
        "records it",
      detail: databaseDetail(error),
    };
  }
  return {
    refund_obligation_id: due.refund_obligation_id,
    payment_intent_id: due.payment_intent_id,
    status: "sent",
    refund_id: refundId,
  };
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const caller = await requireService(req);
  const body = await readJsonObject(req, true);
  const only = body.refund_obligation_id === undefined
    ? null
    : uuidField(body, "refund_obligation_id");
  const context = requestContext(req, caller, "payment_service");

  // Recovery first: a charge it decides to refund is sent in the same run.
  const recoveries = only ? [] : await recoverCharges(context);
  let due = await dueRefunds(context);
  if (only) {
    due = due.filter((d) => d.refund_obligation_id === only);
    if (due.length === 0) {
      throw new HttpError(404, "refund_not_due", "No refund is due with this id");
    }
  }
  const results: RefundResult[] = [];
  for (const d of due) results.push(await sendRefund(context, d));
  const failed = results.some((r) => r.status === "failed") ||
    recoveries.some((r) => r.status === "failed");
  return json(failed ? 502 : 200, { recoveries, results });
}

export default serve(handle);
