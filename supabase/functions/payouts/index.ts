/**
 * payouts: send approved withdrawals to the contractors' connected accounts, and take back the
 * transfers of withdrawals that ended unpaid.
 *
 * POST {} (every approved withdrawal not yet paid out, every transfer to find or reverse) or
 * {"withdrawal_id": uuid} with the project's service-role JWT. As `payment_service`,
 * `public.withdrawals_to_pay_out()` names each withdrawal's amount, currency, connected account
 * (acct_…) and any transfer already made. For each, the function creates a transfer to the
 * connected account (unless one is recorded: a transfer made is never sent again) and then a
 * payout on it (Stripe-Account header), and records each id as soon as Stripe answers. A
 * withdrawal completes or fails only by Stripe's payout.paid / payout.failed webhook.
 *
 * Before asking Stripe for a transfer or a payout, the function records the request
 * (`begin_withdrawal_step`): its key, and whether the same request was sent before and never
 * answered (`resumed`). A resumed request may have been carried out by Stripe with its answer
 * lost, and Stripe forgets keys after 24 hours: so the function first looks for what Stripe
 * made for it (a transfer in the transfer group `withdrawal:<id>`; a payout on the connected
 * account whose `metadata.request` is the request's id) and records that instead of asking
 * again.
 *
 * Stripe keeps its first answer to an idempotency key, a refusal too. So a refusal Stripe
 * answered (4xx: an account that cannot receive payouts yet, a short balance) is recorded
 * (`record_withdrawal_processor_failure`) and the step's next attempt gets the next key,
 * while a request that got no answer (network, 5xx, 429) records nothing more and is retried
 * under the same key, after the look-up. Either way the withdrawal stays approved, its money
 * reserved.
 *
 * `public.withdrawals_with_unanswered_transfer()` names the withdrawals that ended (canceled)
 * while their transfer request was unanswered: their money stays reserved. The function looks
 * for the transfer: found, it is recorded (`record_withdrawal_transfer`) and reversed in the
 * same run; not found a minute after the request, it was not made
 * (`record_withdrawal_transfer_not_made`), and the money is back in the wallet.
 *
 * `public.withdrawals_to_reverse()` names the withdrawals that failed or were canceled after
 * their transfer (the money is back on the connected account, and in the wallet): the
 * function reverses each transfer (`POST /v1/transfers/{id}/reversals`, key
 * `withdrawal:<id>:reversal`, the next one after a recorded refusal; a reversal Stripe already
 * made for the withdrawal is found and recorded instead) and records the reversal
 * (`record_withdrawal_transfer_reversal`), which resolves its `transfer_unreversed`
 * inconsistency and only then returns the money to the wallet (until then it stays reserved,
 * so it cannot be withdrawn a second time). A run over every withdrawal sends only the
 * reversals that are due: one Stripe refused is retried after a growing delay and, after five
 * refusals, only when the withdrawal is named. Reversals are sent before the run's transfers.
 *
 * Answers 200 {results: [...]} when every step succeeded, 502 with the same body when one or
 * more failed (each result says where), 404 when the named withdrawal has nothing to send,
 * find or reverse, 401/403 without the service role.
 */
import { requireService } from "../_shared/auth.ts";
import { type RequestContext, requestContext, rpc, transaction } from "../_shared/db.ts";
import { isPgError } from "../_shared/errors.ts";
import { serve } from "../_shared/serve.ts";
import { allowMethods, HttpError, json, readJsonObject, uuidField } from "../_shared/http.ts";
import { isStripeError, type Stripe, stripe, stripeUnavailable } from "../_shared/stripe.ts";
import { EnvelopeError, openToken } from "../_shared/tokens.ts";

/** A withdrawal awaiting payout, as withdrawals_to_pay_out() names it. */
export interface DuePayout {
  withdrawal_id: string;
  amount_minor: number;
  currency: string;
  account_id: string;
  /** The payout method's external account (ba_… or card_…): the payout's destination. */
  destination: string;
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
  /** False while a refused reversal waits for its next try (or was refused five times). */
  due: boolean;
}

/**
 * A withdrawal that ended while its transfer request was unanswered, as
 * withdrawals_with_unanswered_transfer() names it.
 */
export interface UnansweredTransfer {
  withdrawal_id: string;
  amount_minor: number;
  currency: string;
  account_id: string;
  idempotency_key: string;
  sent_at: Date;
}

/** A request recorded before Stripe is asked, as begin_withdrawal_step() answers it. */
interface StepRequest {
  idempotency_key: string;
  request_id: string;
  sent_at: string;
  resumed: boolean;
}

/** One withdrawal's outcome. */
export interface PayoutResult {
  withdrawal_id: string;
  status: "sent" | "reversed" | "transfer_found" | "not_made" | "pending" | "failed";
  transfer_id: string | null;
  payout_id?: string | null;
  reversal_id?: string | null;
  stage?:
    | "transfer"
    | "payout"
    | "reversal"
    | "transfer_lookup"
    | "payout_lookup"
    | "reversal_lookup"
    | "record_transfer"
    | "record_payout"
    | "record_reversal"
    | "record_not_made";
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

/**
 * The connected account a row names, by its processor_accounts row (`account_id`) and its
 * sealed token (`account_sealed`), opened: the function holds a token only to hand it to Stripe.
 */
async function connectedAccount(row: Record<string, unknown>): Promise<string | null> {
  const rowId = text(row, "account_id");
  if (!rowId) return null;
  return await openToken(row.account_sealed, {
    table: "processor_accounts",
    column: "processor_account_id",
    rowId,
  });
}

/**
 * The external account a payout method names, opened from its sealed token: where its payouts
 * go, whatever the connected account holds as its default at Stripe.
 */
async function externalAccount(row: Record<string, unknown>): Promise<string | null> {
  const rowId = text(row, "payout_method_id");
  if (!rowId) return null;
  return await openToken(row.external_account_sealed, {
    table: "payout_methods",
    column: "processor_external_account_id",
    rowId,
  });
}

/**
 * A row of withdrawals_to_pay_out(), checked: exact integer amounts, an acct_… account and a
 * ba_… or card_… destination.
 */
export async function duePayout(row: Record<string, unknown>): Promise<DuePayout> {
  const id = text(row, "withdrawal_id", "id");
  const account = await connectedAccount(row);
  const destination = await externalAccount(row);
  const currency = text(row, "currency");
  const raw = row.amount_minor;
  const amount = typeof raw === "string" ? Number(raw) : raw;
  if (
    !id || !account || !/^acct_/.test(account) || !destination ||
    !/^(ba|card)_/.test(destination) || !currency || typeof amount !== "number" ||
    !Number.isSafeInteger(amount) || amount <= 0 || String(amount) !== String(raw)
  ) {
    throw new Error(`withdrawals_to_pay_out() answered a row this function cannot pay: ${id}`);
  }
  return {
    withdrawal_id: id,
    amount_minor: amount,
    currency,
    account_id: account,
    destination,
    transfer_id: text(row, "transfer_id", "processor_transfer_id"),
    transfer_idempotency_key: text(row, "transfer_idempotency_key") ??
      `withdrawal:${id}:transfer`,
    payout_idempotency_key: text(row, "payout_idempotency_key") ?? `withdrawal:${id}:payout`,
  };
}

/**
 * The failure of a withdrawal whose connected account cannot be opened (known by its lookup
 * alone, or sealed under a key the function does not hold): nothing is sent, and the rest of
 * the run goes on.
 */
function accountUnreadable(id: string | null, error: EnvelopeError): PayoutResult {
  console.error("payouts: connected account unreadable", id, error.message);
  return {
    withdrawal_id: id ?? "",
    status: "failed",
    transfer_id: null,
    stage: "transfer",
    code: "account_unreadable",
    message: "Its connected account is not sealed, or does not open: nothing was sent",
    detail: error.message,
  };
}

/**
 * `rows` each checked by `check`; a row whose connected account cannot be opened is a failed
 * result of its own, not the run's failure.
 */
async function checkedRows<T>(
  rows: Iterable<Record<string, unknown>>,
  check: (row: Record<string, unknown>) => Promise<T>,
): Promise<{ rows: T[]; unreadable: PayoutResult[] }> {
  const checked: T[] = [];
  const unreadable: PayoutResult[] = [];
  for (const row of rows) {
    try {
      checked.push(await check(row));
    } catch (error) {
      if (!(error instanceof EnvelopeError)) throw error;
      unreadable.push(accountUnreadable(text(row, "withdrawal_id", "id"), error));
    }
  }
  return { rows: checked, unreadable };
}

/** The rows of withdrawals_to_pay_out(), whether it returns a table or a jsonb array. */
async function dueWithdrawals(
  context: RequestContext,
): Promise<{ rows: DuePayout[]; unreadable: PayoutResult[] }> {
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
  return await checkedRows(flat, duePayout);
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
      due: row.due !== false,
    };
  });
}

/** The rows of withdrawals_with_unanswered_transfer(), checked. */
async function unansweredTransfers(
  context: RequestContext,
): Promise<{ rows: UnansweredTransfer[]; unreadable: PayoutResult[] }> {
  const rows = await transaction(context, async (tx) => {
    return await tx`select * from public.withdrawals_with_unanswered_transfer()`;
  });
  return await checkedRows(rows, async (row) => {
    const id = text(row, "withdrawal_id");
    const account = await connectedAccount(row);
    const key = text(row, "idempotency_key");
    const raw = row.amount_minor;
    const amount = typeof raw === "string" ? Number(raw) : raw;
    const sentAt = row.sent_at instanceof Date ? row.sent_at : new Date(String(row.sent_at));
    if (
      !id || !account || !/^acct_/.test(account) || !key || typeof amount !== "number" ||
      !Number.isSafeInteger(amount) || amount <= 0 || String(amount) !== String(raw) ||
      Number.isNaN(sentAt.getTime())
    ) {
      throw new Error(
        `withdrawals_with_unanswered_transfer() answered a row this function cannot settle: ${id}`,
      );
    }
    return {
      withdrawal_id: id,
      amount_minor: amount,
      currency: String(row.currency),
      account_id: account,
      idempotency_key: key,
      sent_at: sentAt,
    };
  });
}

/** Record the request of `step` before Stripe is asked (begin_withdrawal_step). */
async function beginStep(
  context: RequestContext,
  withdrawalId: string,
  step: "transfer" | "payout",
): Promise<StepRequest> {
  return await transaction(
    context,
    (tx) => rpc<StepRequest>(tx, "begin_withdrawal_step", [[withdrawalId, "uuid"], [step, "text"]]),
  );
}

/** How the database answered an error, for a result's detail. */
function databaseDetail(error: unknown): string {
  return isPgError(error)
    ? `${error.code}: ${error.message}`
    : error instanceof HttpError
    ? `${String(error.body.code)}: ${error.message}`
    : "database unreachable";
}

function lookupFailure(
  withdrawalId: string,
  stage: "transfer_lookup" | "payout_lookup" | "reversal_lookup",
  error: unknown,
  transferId: string | null,
): PayoutResult {
  return {
    withdrawal_id: withdrawalId,
    status: "failed",
    transfer_id: transferId,
    stage,
    code: stripeUnavailable(error)
      ? "processor_unavailable"
      : isStripeError(error)
      ? error.code ?? "processor_error"
      : "processor_error",
    message: "Stripe could not be asked what it made for an unanswered request; nothing is " +
      "sent again until it answers",
  };
}

function id(value: string | { id: string } | null | undefined): string | null {
  return value === null || value === undefined
    ? null
    : typeof value === "string"
    ? value
    : value.id;
}

/**
 * The transfer Stripe made for withdrawal `withdrawalId` (its transfer group
 * `withdrawal:<id>`, its metadata, account, amount and currency), the earliest if several.
 * Only the platform makes transfers: none of them is anyone else's.
 */
export async function findTransfer(
  withdrawalId: string,
  account: string,
  amount: number,
  currency: string,
): Promise<Stripe.Transfer | null> {
  const found: Stripe.Transfer[] = [];
  for await (
    const transfer of stripe().transfers.list({
      transfer_group: `withdrawal:${withdrawalId}`,
      limit: 100,
    })
  ) {
    if (
      transfer.transfer_group === `withdrawal:${withdrawalId}` &&
      transfer.metadata?.withdrawal_id === withdrawalId && id(transfer.destination) === account &&
      transfer.amount === amount && transfer.currency === currency.toLowerCase()
    ) {
      found.push(transfer);
    }
  }
  found.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id));
  return found[0] ?? null;
}

/**
 * The payout Stripe made on `account` for request `request` of withdrawal `withdrawalId`: its
 * metadata names both (a payout someone else made on the account cannot know the request's id
 * before payguard's is made), for the amount and currency; the earliest if several.
 */
export async function findPayout(
  withdrawalId: string,
  request: StepRequest,
  account: string,
  amount: number,
  currency: string,
): Promise<Stripe.Payout | null> {
  const since = Math.floor(new Date(request.sent_at).getTime() / 1000) - 3600;
  const found: Stripe.Payout[] = [];
  for await (
    const payout of stripe().payouts.list(
      { limit: 100, created: { gte: since } },
      { stripeAccount: account },
    )
  ) {
    if (
      payout.metadata?.withdrawal_id === withdrawalId &&
      payout.metadata?.request === request.request_id && payout.amount === amount &&
      payout.currency === currency.toLowerCase()
    ) {
      found.push(payout);
    }
  }
  found.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id));
  return found[0] ?? null;
}

/** The reversal Stripe made of `due`'s transfer for its withdrawal, if any. */
async function findReversal(due: DueReversal): Promise<Stripe.TransferReversal | null> {
  for await (
    const reversal of stripe().transfers.listReversals(due.transfer_id, { limit: 100 })
  ) {
    if (
      reversal.metadata?.withdrawal_id === due.withdrawal_id &&
      reversal.amount === due.amount_minor
    ) {
      return reversal;
    }
  }
  return null;
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
  due: Pick<DuePayout, "withdrawal_id" | "amount_minor" | "currency">,
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
    const detail = databaseDetail(error);
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
          // The id after the error's text, apart from its digits: digits joined to an id read
          // as a card number, and the card-data guard would replace the detail.
          [`${detail} (withdrawal ${due.withdrawal_id})`, "text"],
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

/** The database refused to record a request before Stripe was asked: nothing was sent. */
function requestRefused(
  due: DuePayout,
  stage: "transfer" | "payout",
  error: unknown,
  transferId: string | null,
): PayoutResult {
  return {
    withdrawal_id: due.withdrawal_id,
    status: "failed",
    transfer_id: transferId,
    payout_id: null,
    stage,
    code: "request_not_recorded",
    message: `The database did not record the ${stage} request; Stripe was not asked`,
    detail: databaseDetail(error),
  };
}

/** Transfer (unless made already), then payout, recording each. */
async function payOut(context: RequestContext, due: DuePayout): Promise<PayoutResult> {
  let transferId = due.transfer_id;
  if (!transferId) {
    let request: StepRequest;
    try {
      request = await beginStep(context, due.withdrawal_id, "transfer");
    } catch (error) {
      return requestRefused(due, "transfer", error, null);
    }
    let found: Stripe.Transfer | null = null;
    if (request.resumed) {
      try {
        found = await findTransfer(
          due.withdrawal_id,
          due.account_id,
          due.amount_minor,
          due.currency,
        );
      } catch (error) {
        return {
          ...lookupFailure(due.withdrawal_id, "transfer_lookup", error, null),
          payout_id: null,
        };
      }
    }
    if (found) {
      transferId = found.id;
    } else {
      try {
        const transfer = await stripe().transfers.create({
          amount: due.amount_minor,
          currency: due.currency.toLowerCase(),
          destination: due.account_id,
          transfer_group: `withdrawal:${due.withdrawal_id}`,
          metadata: { withdrawal_id: due.withdrawal_id },
        }, { idempotencyKey: request.idempotency_key });
        transferId = transfer.id;
      } catch (error) {
        return await stripeFailure(
          context,
          due.withdrawal_id,
          "transfer",
          request.idempotency_key,
          error,
          null,
        );
      }
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
  let request: StepRequest;
  try {
    request = await beginStep(context, due.withdrawal_id, "payout");
  } catch (error) {
    return requestRefused(due, "payout", error, transferId);
  }
  let payoutId: string | null = null;
  if (request.resumed) {
    try {
      payoutId = (await findPayout(
        due.withdrawal_id,
        request,
        due.account_id,
        due.amount_minor,
        due.currency,
      ))?.id ?? null;
    } catch (error) {
      return {
        ...lookupFailure(due.withdrawal_id, "payout_lookup", error, transferId),
        payout_id: null,
      };
    }
  }
  if (!payoutId) {
    try {
      const payout = await stripe().payouts.create({
        amount: due.amount_minor,
        currency: due.currency.toLowerCase(),
        // The payout method's bank account: one added at Stripe, and not as a payout method
        // (with its cool-down), receives nothing.
        destination: due.destination,
        metadata: { withdrawal_id: due.withdrawal_id, request: request.request_id },
      }, { idempotencyKey: request.idempotency_key, stripeAccount: due.account_id });
      payoutId = payout.id;
    } catch (error) {
      return await stripeFailure(
        context,
        due.withdrawal_id,
        "payout",
        request.idempotency_key,
        error,
        transferId,
      );
    }
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

/** How long after its request a transfer Stripe does not have counts as not made. */
const IN_FLIGHT_MS = 60_000;

/**
 * A withdrawal that ended while its transfer request was unanswered: record the transfer
 * Stripe made for it (then reversed like any other), or, a minute after the request, that
 * Stripe made none (the money is back in the wallet).
 */
async function settleUnanswered(
  context: RequestContext,
  unanswered: UnansweredTransfer,
): Promise<PayoutResult> {
  let found: Stripe.Transfer | null;
  try {
    found = await findTransfer(
      unanswered.withdrawal_id,
      unanswered.account_id,
      unanswered.amount_minor,
      unanswered.currency,
    );
  } catch (error) {
    return lookupFailure(unanswered.withdrawal_id, "transfer_lookup", error, null);
  }
  if (found) {
    const refused = await record(context, unanswered, "record_withdrawal_transfer", found.id);
    if (refused) {
      return {
        withdrawal_id: unanswered.withdrawal_id,
        status: "failed",
        transfer_id: found.id,
        stage: "record_transfer",
        code: "transfer_not_recorded",
        message: "Stripe made the transfer but the database did not record it; it is reported",
        detail: refused,
      };
    }
    return {
      withdrawal_id: unanswered.withdrawal_id,
      status: "transfer_found",
      transfer_id: found.id,
    };
  }
  if (Date.now() - unanswered.sent_at.getTime() < IN_FLIGHT_MS) {
    return {
      withdrawal_id: unanswered.withdrawal_id,
      status: "pending",
      transfer_id: null,
      message: "The transfer request is less than a minute old and may still be in flight; " +
        "the next call looks for it again",
    };
  }
  try {
    await transaction(context, (tx) =>
      rpc(tx, "record_withdrawal_transfer_not_made", [
        [unanswered.withdrawal_id, "uuid"],
        [unanswered.idempotency_key, "text"],
      ]));
  } catch (error) {
    return {
      withdrawal_id: unanswered.withdrawal_id,
      status: "failed",
      transfer_id: null,
      stage: "record_not_made",
      code: "not_made_not_recorded",
      message: "Stripe has no transfer for the request, but the database did not record it; " +
        "the money stays reserved until the next call",
      detail: databaseDetail(error),
    };
  }
  return { withdrawal_id: unanswered.withdrawal_id, status: "not_made", transfer_id: null };
}

/** Reverse a transfer of a withdrawal that ended unpaid, and record the reversal. */
async function reverse(context: RequestContext, due: DueReversal): Promise<PayoutResult> {
  // A reversal Stripe made whose answer was lost (or whose key Stripe has forgotten) is
  // recorded, not asked for again.
  let reversalId: string | null;
  try {
    reversalId = (await findReversal(due))?.id ?? null;
  } catch (error) {
    return lookupFailure(due.withdrawal_id, "reversal_lookup", error, due.transfer_id);
  }
  if (!reversalId) {
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
      detail: databaseDetail(error),
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

  // Withdrawals that ended while their transfer request was unanswered first: a transfer
  // found is recorded, and reversed below in the same run.
  const found = await unansweredTransfers(context);
  let unanswered = found.rows;
  let unreadable = found.unreadable;
  if (only) unanswered = unanswered.filter((u) => u.withdrawal_id === only);
  const results: PayoutResult[] = [];
  for (const u of unanswered) results.push(await settleUnanswered(context, u));
  const payable = await dueWithdrawals(context);
  let due = payable.rows;
  unreadable = [...unreadable, ...payable.unreadable];
  let reversals = await dueReversals(context);
  if (only) {
    // A named withdrawal's reversal is tried now, whatever its back-off: operations ask.
    due = due.filter((d) => d.withdrawal_id === only);
    reversals = reversals.filter((r) => r.withdrawal_id === only);
    unreadable = unreadable.filter((u) => u.withdrawal_id === only);
    if (
      due.length === 0 && reversals.length === 0 && unanswered.length === 0 &&
      unreadable.length === 0
    ) {
      throw new HttpError(
        404,
        "withdrawal_not_due",
        "No approved withdrawal awaits payout, nor any transfer its reversal or its finding, " +
          "with this id",
      );
    }
  } else {
    reversals = reversals.filter((r) => r.due);
  }
  // Reversals first: the money of withdrawals that ended unpaid comes back to the platform
  // before any new transfer of the run leaves it.
  for (const r of reversals) results.push(await reverse(context, r));
  for (const d of due) results.push(await payOut(context, d));
  results.push(...unreadable);
  const failed = results.some((r) => r.status === "failed");
  return json(failed ? 502 : 200, { results });
}

export default serve(handle);
