/**
 * payouts: send approved withdrawals to the contractors' connected accounts.
 *
 * POST {} (every approved withdrawal not yet paid out) or {"withdrawal_id": uuid} with the
 * project's service-role JWT. As `payment_service`, `public.withdrawals_to_pay_out()` names
 * each withdrawal's amount, currency, connected account (acct_…) and any transfer already
 * made. For each, the function creates a transfer to the connected account and then a payout
 * on it (Stripe-Account header), each with the idempotency key derived from the withdrawal
 * (`withdrawal:<id>:transfer`, `withdrawal:<id>:payout`), and records each id as soon as Stripe
 * answers. A withdrawal completes or fails only by Stripe's payout.paid / payout.failed
 * webhook. When Stripe fails, nothing is recorded for that step: the reservation stays and the
 * withdrawal is retried by the next call, with the same keys, so nothing is paid twice.
 *
 * Answers 200 {results: [...]} when every withdrawal was sent, 502 with the same body when
 * one or more failed at Stripe (each result says where), 404 when the named withdrawal is not
 * awaiting payout, 401/403 without the service role.
 */
import { requireService } from "../_shared/auth.ts";
import { type RequestContext, requestContext, rpc, transaction } from "../_shared/db.ts";
import { isPgError } from "../_shared/errors.ts";
import { serve } from "../_shared/serve.ts";
import { allowMethods, HttpError, json, readJsonObject, uuidField } from "../_shared/http.ts";
import { isStripeError, stripe, stripeUnavailable } from "../_shared/stripe.ts";

/** A withdrawal awaiting payout, as withdrawals_to_pay_out() names it. */
export interface DuePayout {
  withdrawal_id: string;
  amount_minor: number;
  currency: string;
  account_id: string;
  transfer_id: string | null;
  transfer_idempotency_key: string;
  payout_idempotency_key: string;
}

/** One withdrawal's outcome. */
export interface PayoutResult {
  withdrawal_id: string;
  status: "sent" | "failed";
  transfer_id: string | null;
  payout_id: string | null;
  stage?: "transfer" | "payout" | "record_transfer" | "record_payout";
  code?: string;
  message?: string;
  /** Why the database did not record what Stripe made. */
  detail?: string;
}

function text(row: Record<string, unknown>, ...names: string[]): string | null {
  for (const name of names) {
    const value = row[name];
    if (typeof value === "string" && value !== "") return value;
  }
  return null;
}

/** A row of withdrawals_to_pay_out(), checked: exact integer amounts, an acct_… account. */
export function duePayout(row: Record<string, unknown>): DuePayout {
  const id = text(row, "withdrawal_id", "id");
  const account = text(row, "processor_account_id", "connected_account_id", "account_id");
  const currency = text(row, "currency");
  const raw = row.amount_minor;
  const amount = typeof raw === "string" ? Number(raw) : raw;
  if (
    !id || !account || !/^acct_/.test(account) || !currency || typeof amount !== "number" ||
    !Number.isSafeInteger(amount) || amount <= 0 || String(amount) !== String(raw)
  ) {
    throw new Error(`withdrawals_to_pay_out() answered a row this function cannot pay: ${id}`);
  }
  return {
    withdrawal_id: id,
    amount_minor: amount,
    currency,
    account_id: account,
    transfer_id: text(row, "transfer_id", "processor_transfer_id"),
    transfer_idempotency_key: text(row, "transfer_idempotency_key") ??
      `withdrawal:${id}:transfer`,
    payout_idempotency_key: text(row, "payout_idempotency_key") ?? `withdrawal:${id}:payout`,
  };
}

/** The rows of withdrawals_to_pay_out(), whether it returns a table or a jsonb array. */
async function dueWithdrawals(context: RequestContext): Promise<DuePayout[]> {
  const rows = await transaction(context, async (tx) => {
    return await tx`select * from public.withdrawals_to_pay_out()`;
  });
  const flat: Record<string, unknown>[] = [];
  for (const row of rows) {
    const only = Object.keys(row).length === 1 ? Object.values(row)[0] : undefined;
    if (Array.isArray(only)) flat.push(...only as Record<string, unknown>[]);
    else if (only !== null && typeof only === "object") flat.push(only as Record<string, unknown>);
    else flat.push(row);
  }
  return flat.map(duePayout);
}

function stripeFailure(
  due: DuePayout,
  stage: PayoutResult["stage"],
  error: unknown,
  transferId: string | null,
): PayoutResult {
  const code = stripeUnavailable(error)
    ? "processor_unavailable"
    : isStripeError(error)
    ? error.code ?? "processor_error"
    : "processor_error";
  return {
    withdrawal_id: due.withdrawal_id,
    status: "failed",
    transfer_id: transferId,
    payout_id: null,
    stage,
    code,
    message: `Stripe did not accept the ${stage}; the withdrawal stays approved and is retried ` +
      "safely",
  };
}

/** Record a Stripe object's id; when the database refuses it, report the inconsistency. */
async function record(
  context: RequestContext,
  due: DuePayout,
  fn: "record_withdrawal_transfer" | "record_withdrawal_payout",
  objectId: string,
): Promise<string | null> {
  try {
    await transaction(
      context,
      (tx) => rpc(tx, fn, [[due.withdrawal_id, "uuid"], [objectId, "text"]]),
    );
    return null;
  } catch (error) {
    const detail = isPgError(error)
      ? `${error.code}: ${error.message}`
      : error instanceof HttpError
      ? `${String(error.body.code)}: ${error.message}`
      : "database unreachable";
    try {
      await transaction(context, (tx) =>
        rpc(tx, "record_processor_inconsistency", [
          [
            fn === "record_withdrawal_transfer" ? "transfer_unrecorded" : "payout_unrecorded",
            "text",
          ],
          [objectId, "text"],
          [null, "uuid"],
          [due.amount_minor, "bigint"],
          [due.currency, "char(3)"],
          [`withdrawal ${due.withdrawal_id}: ${detail}`, "text"],
        ]));
    } catch (reportError) {
      console.error(
        "processor inconsistency not recorded",
        JSON.stringify({ withdrawal_id: due.withdrawal_id, object_id: objectId, detail }),
        reportError,
      );
    }
    return detail;
  }
}

/** Transfer (unless made already), then payout, recording each. */
async function payOut(context: RequestContext, due: DuePayout): Promise<PayoutResult> {
  let transferId = due.transfer_id;
  if (!transferId) {
    try {
      const transfer = await stripe().transfers.create({
        amount: due.amount_minor,
        currency: due.currency.toLowerCase(),
        destination: due.account_id,
        transfer_group: `withdrawal:${due.withdrawal_id}`,
        metadata: { withdrawal_id: due.withdrawal_id },
      }, { idempotencyKey: due.transfer_idempotency_key });
      transferId = transfer.id;
    } catch (error) {
      return stripeFailure(due, "transfer", error, null);
    }
    const refused = await record(context, due, "record_withdrawal_transfer", transferId);
    if (refused) {
      return {
        withdrawal_id: due.withdrawal_id,
        status: "failed",
        transfer_id: transferId,
        payout_id: null,
        stage: "record_transfer",
        code: "transfer_not_recorded",
        message: "Stripe made the transfer but the database did not record it; it is reported",
        detail: refused,
      };
    }
  }
  let payoutId: string;
  try {
    const payout = await stripe().payouts.create({
      amount: due.amount_minor,
      currency: due.currency.toLowerCase(),
      metadata: { withdrawal_id: due.withdrawal_id },
    }, { idempotencyKey: due.payout_idempotency_key, stripeAccount: due.account_id });
    payoutId = payout.id;
  } catch (error) {
    return stripeFailure(due, "payout", error, transferId);
  }
  const refused = await record(context, due, "record_withdrawal_payout", payoutId);
  if (refused) {
    return {
      withdrawal_id: due.withdrawal_id,
      status: "failed",
      transfer_id: transferId,
      payout_id: payoutId,
      stage: "record_payout",
      code: "payout_not_recorded",
      message: "Stripe made the payout but the database did not record it; it is reported",
      detail: refused,
    };
  }
  return {
    withdrawal_id: due.withdrawal_id,
    status: "sent",
    transfer_id: transferId,
    payout_id: payoutId,
  };
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const caller = await requireService(req);
  const body = await readJsonObject(req, true);
  const only = body.withdrawal_id === undefined ? null : uuidField(body, "withdrawal_id");
  const context = requestContext(req, caller, "payment_service");

  let due = await dueWithdrawals(context);
  if (only) {
    due = due.filter((d) => d.withdrawal_id === only);
    if (due.length === 0) {
      throw new HttpError(
        404,
        "withdrawal_not_due",
        "No approved withdrawal awaits payout with this id",
      );
    }
  }
  const results: PayoutResult[] = [];
  for (const d of due) results.push(await payOut(context, d));
  const failed = results.some((r) => r.status === "failed");
  return json(failed ? 502 : 200, { results });
}

export default serve(handle);
