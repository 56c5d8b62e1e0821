/**
 * payouts: send approved withdrawals to the contractors' connected accounts, and take back the
 * transfers of withdrawals that ended unpaid.
 *
 * POST {} (every approved withdrawal not yet paid out, and every transfer to reverse) or
 * {"withdrawal_id": uuid} with the project's service-role JWT. As `payment_service`,
 * `public.withdrawals_to_pay_out()` names each withdrawal's amount, currency, connected account
 * (acct_…), any transfer already made, and the idempotency keys of the attempt each step is at.
 * For each, the function creates a transfer to the connected account (unless one is recorded:
 * a transfer made is never sent again) and then a payout on it (Stripe-Account header), and
 * records each id as soon as Stripe answers. A withdrawal completes or fails only by Stripe's
 * payout.paid / payout.failed webhook.
 *
 * Stripe keeps its first answer to an idempotency key, a refusal too. So a refusal Stripe
 * answered (4xx: an account that cannot receive payouts yet, a short balance) is recorded
 * (`record_withdrawal_processor_failure`) and the step's next attempt gets the next key,
 * while a request that got no answer (network, 5xx, 429) records nothing and is retried under
 * the same key, which Stripe runs at most once. Either way the withdrawal stays approved, its
 * money reserved.
 *
 * `public.withdrawals_to_reverse()` names the withdrawals that failed or were canceled after
 * their transfer (the money is back on the connected account, and in the wallet): the
 * function reverses each transfer (`POST /v1/transfers/{id}/reversals`, key
 * `withdrawal:<id>:reversal`, the next one after a recorded refusal) and records the reversal
 * (`record_withdrawal_transfer_reversal`), which resolves its `transfer_unreversed`
 * inconsistency and only then returns the money to the wallet (until then it stays reserved,
 * so it cannot be withdrawn a second time). Reversals are sent before the run's transfers.
 *
 * Answers 200 {results: [...]} when every step succeeded, 502 with the same body when one or
 * more failed (each result says where), 404 when the named withdrawal has nothing to send or
 * reverse, 401/403 without the service role.
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

/** A withdrawal whose transfer is to be reversed, as withdrawals_to_reverse() names it. */
export interface DueReversal {
  withdrawal_id: string;
  amount_minor: number;
  currency: string;
  transfer_id: string;
  reversal_idempotency_key: string;
}

/** One withdrawal's outcome. */
export interface PayoutResult {
  withdrawal_id: string;
  status: "sent" | "reversed" | "failed";
  transfer_id: string | null;
  payout_id?: string | null;
  reversal_id?: string | null;
  stage?:
    | "transfer"
    | "payout"
    | "reversal"
    | "record_transfer"
    | "record_payout"
    | "record_reversal";
  code?: string;
  message?: string;
  /** Why the database did not record what Stripe made. */
  detail?: string;
  /** For a refusal Stripe answered: recorded, and the step is retried under this key. */
  next_idempotency_key?: string;
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

/** The rows of withdrawals_to_reverse(), checked. */
async function dueReversals(context: RequestContext): Promise<DueReversal[]> {
  const rows = await transaction(context, async (tx) => {
    return await tx`select * from public.withdrawals_to_reverse()`;
  });
  return rows.map((row) => {
    const id = text(row, "withdrawal_id");
    const transfer = text(row, "processor_transfer_id");
    const key = text(row, "reversal_idempotency_key");
    const raw = row.amount_minor;
    const amount = typeof raw === "string" ? Number(raw) : raw;
    if (
      !id || !transfer || !/^tr_/.test(transfer) || !key || typeof amount !== "number" ||
      !Number.isSafeInteger(amount) || amount <= 0 || String(amount) !== String(raw)
    ) {
      throw new Error(
        `withdrawals_to_reverse() answered a row this function cannot reverse: ${id}`,
      );
    }
    return {
      withdrawal_id: id,
      amount_minor: amount,
      currency: String(row.currency),
      transfer_id: transfer,
      reversal_idempotency_key: key,
    };
  });
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

async function stripeFailure(
  context: RequestContext,
  withdrawalId: string,
  stage: "transfer" | "payout" | "reversal",
  idempotencyKey: string,
  error: unknown,
  transferId: string | null,
): Promise<PayoutResult> {
  const code = stripeUnavailable(error)
    ? "processor_unavailable"
    : isStripeError(error)
    ? error.code ?? "processor_error"
    : "processor_error";
  const result: PayoutResult = {
    withdrawal_id: withdrawalId,
    status: "failed",
    transfer_id: transferId,
    stage,
    code,
    message: stage === "reversal"
      ? "Stripe did not reverse the transfer; it is retried by the next call"
      : `Stripe did not accept the ${stage}; the withdrawal stays approved and is retried ` +
        "safely",
  };
  if (stage !== "reversal") result.payout_id = null;
  if (answeredRefusal(error)) {
    try {
      const recorded = await transaction(
        context,
        (tx) =>
          rpc<{ next_idempotency_key: string }>(tx, "record_withdrawal_processor_failure", [
            [withdrawalId, "uuid"],
            [stage, "text"],
            [idempotencyKey, "text"],
            [code, "text"],
            [(error as Error).message.slice(0, 500), "text"],
          ]),
      );
      result.next_idempotency_key = recorded.next_idempotency_key;
    } catch (recordError) {
      // Unrecorded, the next call sends the same key again and gets the same refusal: safe.
      console.error("record_withdrawal_processor_failure", withdrawalId, stage, recordError);
    }
  }
  return result;
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
      return await stripeFailure(
        context,
        due.withdrawal_id,
        "transfer",
        due.transfer_idempotency_key,
        error,
        null,
      );
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
    return await stripeFailure(
      context,
      due.withdrawal_id,
      "payout",
      due.payout_idempotency_key,
      error,
      transferId,
    );
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

/** Reverse a transfer of a withdrawal that ended unpaid, and record the reversal. */
async function reverse(context: RequestContext, due: DueReversal): Promise<PayoutResult> {
  let reversalId: string;
  try {
    const reversal = await stripe().transfers.createReversal(due.transfer_id, {
      amount: due.amount_minor,
      metadata: { withdrawal_id: due.withdrawal_id },
    }, { idempotencyKey: due.reversal_idempotency_key });
    reversalId = reversal.id;
  } catch (error) {
    return await stripeFailure(
      context,
      due.withdrawal_id,
      "reversal",
      due.reversal_idempotency_key,
      error,
      due.transfer_id,
    );
  }
  try {
    await transaction(context, (tx) =>
      rpc(tx, "record_withdrawal_transfer_reversal", [
        [due.withdrawal_id, "uuid"],
        [reversalId, "text"],
      ]));
  } catch (error) {
    // The transfer_unreversed inconsistency stays open, and the next call sends the same key:
    // Stripe replays this reversal, which is then recorded.
    return {
      withdrawal_id: due.withdrawal_id,
      status: "failed",
      transfer_id: due.transfer_id,
      reversal_id: reversalId,
      stage: "record_reversal",
      code: "reversal_not_recorded",
      message: "Stripe reversed the transfer but the database did not record it; it stays " +
        "reported until the next call records it",
      detail: isPgError(error)
        ? `${error.code}: ${error.message}`
        : error instanceof HttpError
        ? `${String(error.body.code)}: ${error.message}`
        : "database unreachable",
    };
  }
  return {
    withdrawal_id: due.withdrawal_id,
    status: "reversed",
    transfer_id: due.transfer_id,
    reversal_id: reversalId,
  };
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const caller = await requireService(req);
  const body = await readJsonObject(req, true);
  const only = body.withdrawal_id === undefined ? null : uuidField(body, "withdrawal_id");
  const context = requestContext(req, caller, "payment_service");

  let due = await dueWithdrawals(context);
  let reversals = await dueReversals(context);
  if (only) {
    due = due.filter((d) => d.withdrawal_id === only);
    reversals = reversals.filter((r) => r.withdrawal_id === only);
    if (due.length === 0 && reversals.length === 0) {
      throw new HttpError(
        404,
        "withdrawal_not_due",
        "No approved withdrawal awaits payout, nor any transfer its reversal, with this id",
      );
    }
  }
  // Reversals first: the money of withdrawals that ended unpaid comes back to the platform
  // before any new transfer of the run leaves it.
  const results: PayoutResult[] = [];
  for (const r of reversals) results.push(await reverse(context, r));
  for (const d of due) results.push(await payOut(context, d));
  const failed = results.some((r) => r.status === "failed");
  return json(failed ? 502 : 200, { results });
}

export default serve(handle);
