/**
 * milestone-payments: fund a milestone payment with one of the payer's saved cards.
 *
 * POST {"milestone_payment_id": uuid, "payment_method_id": uuid} with the payer's JWT.
 * `public.begin_funding_attempt` runs as the user (RLS, MFA and limits as for any app client)
 * and names the amount, currency, customer, card and idempotency key of the attempt; the
 * function then creates and confirms a PaymentIntent for exactly that amount (never one the
 * client sent), with metadata naming the payment, and records the intent's id as
 * `payment_service`. The payment becomes funded only by Stripe's webhook.
 *
 * An open attempt that recorded no PaymentIntent is abandoned by begin_funding_attempt when
 * the payer asks with another payment method a minute after it opened; one that has a
 * PaymentIntent (e.g. waiting for a 3-D Secure that will not come) is replaced: its intent is
 * canceled at Stripe, the attempt recorded as failed, and the next one opened; an attempt Stripe
 * refuses to charge (an invalid request, e.g. its card or customer gone) is recorded as
 * failed at once, so that the next request opens the next attempt under the next key.
 *
 * Answers: 202 {status: "processing"|"succeeded", payment_intent_id} (charged or charging;
 * funded when the webhook arrives); 402 {code: "card_declined", …} when the card is declined
 * (the failure is recorded, a new attempt may follow); 409 {code: "authentication_required",
 * client_secret, next_action} when 3-D Secure must be completed by the client; 409
 * {code: "charge_in_progress"} when another payment method's attempt is charged or charging
 * and Stripe will not cancel it; the database's
 * own status for a refusal (401/403/404/409/422/429); 503 when Stripe or the database could not
 * be reached (nothing charged twice: a retry reuses the attempt's idempotency key); 502 when
 * Stripe charged but the database refused or lost the record, which is then reported as a
 * processor inconsistency.
 */
import { requireUser } from "../_shared/auth.ts";
import { type RequestContext, requestContext, rpc, setRole, transaction } from "../_shared/db.ts";
import {
  errorResponse,
  isConnectionError,
  isPgError,
  withoutProcessorIds,
} from "../_shared/errors.ts";
import { serve } from "../_shared/serve.ts";
import { allowMethods, HttpError, json, readJsonObject, uuidField } from "../_shared/http.ts";
import { isStripeError, Stripe, stripe, stripeUnavailable } from "../_shared/stripe.ts";
import { openToken } from "../_shared/tokens.ts";

/** What begin_funding_attempt answers. */
export interface Attempt {
  attempt: number;
  idempotency_key: string;
  amount_minor: number | string;
  currency: string;
  /** The payment method charged, by its row (its tokens are read as payment_service). */
  payment_method: string | null;
  payment_intent_id: string | null;
  /** The open attempt is another payment method's, with a PaymentIntent: cancel it first. */
  cancel_to_replace?: boolean;
}

/** The amount as an exact integer of minor units, or an error: never a float. */
export function minorUnits(value: number | string): number {
  const amount = typeof value === "string" ? Number(value) : value;
  if (!Number.isSafeInteger(amount) || amount <= 0 || String(amount) !== String(value)) {
    throw new Error(`amount_minor ${value} is not an exact positive integer`);
  }
  return amount;
}

/** As payment_service, in a transaction whose claims are the user's. */
function asService<T>(context: RequestContext, fn: Parameters<typeof transaction<T>>[1]) {
  return transaction(context, async (tx) => {
    await setRole(tx, "payment_service");
    return await fn(tx);
  });
}

/** The Stripe ids an attempt charges: its payment method's and its payer's customer's. */
export interface ChargedTokens {
  customer: string;
  paymentMethod: string;
}

/**
 * The tokens of the attempt's payment method and of its owner's customer, read and opened as
 * payment_service (the payer's request never sees them).
 */
async function chargedTokens(context: RequestContext, attempt: Attempt): Promise<ChargedTokens> {
  const methodId = attempt.payment_method;
  if (methodId === null) throw new Error(`attempt ${attempt.attempt} names no payment method`);
  const rows = await asService(context, (tx) =>
    tx`
      select m.processor_payment_method_id_sealed as method_sealed, m.user_id::text as user_id,
        c.processor_customer_id_sealed as customer_sealed
      from public.payment_methods as m
      join public.processor_customers as c on c.user_id = m.user_id
      where m.id = ${methodId}::uuid
    `);
  if (rows.length === 0) throw new Error(`payment method ${methodId} is gone`);
  const [row] = rows;
  return {
    paymentMethod: await openToken(row.method_sealed, {
      table: "payment_methods",
      column: "processor_payment_method_id",
      rowId: methodId,
    }),
    customer: await openToken(row.customer_sealed, {
      table: "processor_customers",
      column: "processor_customer_id",
      rowId: String(row.user_id),
    }),
  };
}

async function recordFailure(
  context: RequestContext,
  paymentId: string,
  attempt: Attempt,
  code: string,
  message: string,
): Promise<void> {
  try {
    await asService(context, (tx) =>
      rpc(tx, "record_funding_failure", [
        [paymentId, "uuid"],
        [attempt.attempt, "integer"],
        [code, "text"],
        [message.slice(0, 500), "text"],
      ]));
  } catch (error) {
    // The webhook reports the same failure; the client's answer does not depend on this one.
    console.error("record_funding_failure", paymentId, attempt.attempt, error);
  }
}

/** Stripe charged (or may have) but the database would not take the record: report it. */
async function chargedButNotRecorded(
  context: RequestContext,
  paymentId: string,
  attempt: Attempt,
  intent: Stripe.PaymentIntent,
  error: unknown,
): Promise<Response> {
  const detail = isPgError(error)
    ? `${error.code}: ${error.message}`
    : error instanceof HttpError
    ? `${String(error.body.code)}: ${error.message}`
    : "database unreachable";
  const body = {
    payment_intent_id: intent.id,
    milestone_payment_id: paymentId,
    payment_intent_status: intent.status,
  };
  try {
    await asService(context, (tx) =>
      rpc(tx, "record_processor_inconsistency", [
        ["charge_unrecorded", "text"],
        [intent.id, "text"],
        [paymentId, "uuid"],
        [minorUnits(attempt.amount_minor), "bigint"],
        [attempt.currency, "char(3)"],
        [
          `the PaymentIntent could not be recorded for attempt ${attempt.attempt}: ${detail}`,
          "text",
        ],
      ]));
  } catch (reportError) {
    console.error(
      "processor inconsistency not recorded",
      JSON.stringify({ ...body, detail }),
      reportError,
    );
    return json(503, {
      code: "database_unavailable",
      message: "Stripe accepted the payment but the database could not record it; " +
        "operations are alerted. Do not pay again.",
      ...body,
    });
  }
  return json(502, {
    code: "charge_not_recorded",
    message: "Stripe accepted the payment but the database refused to record it; it is " +
      "reported for operations to fund or refund. Do not pay again.",
    ...body,
  });
}

/** The answer for a PaymentIntent's state after it was created or found. */
async function answerFor(
  context: RequestContext,
  paymentId: string,
  attempt: Attempt,
  intent: Stripe.PaymentIntent,
): Promise<Response> {
  const base = {
    milestone_payment_id: paymentId,
    attempt: attempt.attempt,
    payment_intent_id: intent.id,
  };
  switch (intent.status) {
    case "succeeded":
    case "processing":
      return json(202, {
        ...base,
        status: intent.status,
        message: "The payment is funded when Stripe confirms the charge",
      });
    case "requires_action":
      return json(409, {
        ...base,
        code: "authentication_required",
        message: "The card needs 3-D Secure authentication by the payer; nothing is funded yet",
        client_secret: intent.client_secret,
        next_action: intent.next_action,
      });
    case "requires_payment_method": {
      const failure = intent.last_payment_error;
      const code = failure?.decline_code || failure?.code || "payment_failed";
      // Stripe's words to the payer name no processor id (a token is payment_service's).
      const message = withoutProcessorIds(failure?.message ?? "The payment failed");
      await recordFailure(context, paymentId, attempt, code, message);
      return json(402, { ...base, code, message });
    }
    default:
      return json(409, {
        ...base,
        code: "payment_intent_" + intent.status,
        message: `The PaymentIntent is ${intent.status}; nothing is funded`,
      });
  }
}

/**
 * The PaymentIntent for an attempt: its amount and currency exactly, confirmed at once with
 * the saved card. `payment_method_types: ["card"]` (still accepted by the API, no longer in
 * the SDK's types) confirms without a return URL, as a saved card is charged.
 */
export function intentParams(
  paymentId: string,
  attempt: Attempt,
  amount: number,
  charged: ChargedTokens,
): Stripe.PaymentIntentCreateParams {
  const params: Stripe.PaymentIntentCreateParams & { payment_method_types: string[] } = {
    amount,
    currency: attempt.currency.toLowerCase(),
    customer: charged.customer,
    payment_method: charged.paymentMethod,
    payment_method_types: ["card"],
    confirm: true,
    metadata: {
      milestone_payment_id: paymentId,
      funding_attempt: String(attempt.attempt),
    },
  };
  return params;
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const caller = await requireUser(req);
  const body = await readJsonObject(req);
  const paymentId = uuidField(body, "milestone_payment_id");
  const methodId = uuidField(body, "payment_method_id");
  const context = requestContext(req, caller);

  const begin = () =>
    transaction(
      context,
      (tx) => rpc<Attempt>(tx, "begin_funding_attempt", [[paymentId, "uuid"], [methodId, "uuid"]]),
    );
  let attempt = await begin();
  if (attempt.cancel_to_replace) {
    const kept = await cancelToReplace(context, paymentId, attempt);
    if (kept) return kept;
    attempt = await begin();
    if (attempt.cancel_to_replace) return stillOpen(paymentId, attempt, "open");
  }
  const amount = minorUnits(attempt.amount_minor);

  let intent: Stripe.PaymentIntent;
  try {
    intent = attempt.payment_intent_id
      ? await stripe().paymentIntents.retrieve(attempt.payment_intent_id)
      : await stripe().paymentIntents.create(
        intentParams(paymentId, attempt, amount, await chargedTokens(context, attempt)),
        { idempotencyKey: attempt.idempotency_key },
      );
  } catch (error) {
    if (stripeUnavailable(error)) return unavailable(paymentId, attempt);
    if (isStripeError(error) && error.type === "StripeCardError") {
      const code = error.decline_code || error.code || "card_declined";
      const declined = error.payment_intent;
      if (declined?.id) {
        await recordIntent(context, paymentId, attempt, declined.id).catch((recordError) =>
          // The failure below is what matters to the payer; the webhook names the intent too.
          console.error("record_payment_intent after a decline", declined.id, recordError)
        );
      }
      await recordFailure(context, paymentId, attempt, code, error.message);
      return json(402, {
        code,
        message: withoutProcessorIds(error.message),
        milestone_payment_id: paymentId,
        attempt: attempt.attempt,
        payment_intent_id: declined?.id ?? null,
      });
    }
    if (isStripeError(error) && error.type === "StripeInvalidRequestError") {
      // Stripe answered that it will not charge this attempt (e.g. the card or customer is
      // gone), and would replay that answer to its key for 24 hours: the attempt fails, so
      // that the next request opens the next one, under the next key.
      const refused = error.payment_intent;
      if (refused?.id) {
        await recordIntent(context, paymentId, attempt, refused.id).catch((recordError) =>
          console.error("record_payment_intent after a refusal", refused.id, recordError)
        );
      }
      const code = error.code || "invalid_request";
      await recordFailure(context, paymentId, attempt, code, error.message);
      return json(502, {
        code: "processor_error",
        message: "Stripe refused the PaymentIntent; nothing is funded. The attempt is closed: " +
          "a new request opens the next one.",
        processor_code: error.code ?? null,
        milestone_payment_id: paymentId,
        attempt: attempt.attempt,
      });
    }
    if (isStripeError(error)) {
      return json(502, {
        code: "processor_error",
        message: "Stripe refused the PaymentIntent; nothing is funded",
        processor_code: error.code ?? null,
        milestone_payment_id: paymentId,
      });
    }
    throw error;
  }

  if (!attempt.payment_intent_id) {
    try {
      await recordIntent(context, paymentId, attempt, intent.id);
    } catch (error) {
      if (intent.status === "succeeded" || intent.status === "processing") {
        return await chargedButNotRecorded(context, paymentId, attempt, intent, error);
      }
      if (isConnectionError(error) || isPgError(error) || error instanceof HttpError) {
        return errorResponse(error);
      }
      throw error;
    }
  }
  return await answerFor(context, paymentId, attempt, intent);
}

/**
 * The open attempt is charged with another payment method (or one since deleted) and has a
 * PaymentIntent, e.g. waiting for a 3-D Secure the payer will not complete. It is canceled at
 * Stripe first; only once Stripe says it is canceled (or failed) is the attempt recorded as
 * failed, so that the next request to the database opens the next attempt: never two live
 * PaymentIntents for one payment. null when it is out of the way, else the answer.
 */
async function cancelToReplace(
  context: RequestContext,
  paymentId: string,
  attempt: Attempt,
): Promise<Response | null> {
  const intentId = attempt.payment_intent_id;
  if (!intentId) throw new Error("cancel_to_replace names no PaymentIntent");
  let intent: Stripe.PaymentIntent;
  try {
    intent = await stripe().paymentIntents.cancel(intentId);
  } catch (error) {
    if (stripeUnavailable(error)) return unavailable(paymentId, attempt);
    if (!isStripeError(error)) throw error;
    // Stripe will not cancel it (already canceled or failed, or succeeded, or processing):
    // what it is now decides.
    try {
      intent = await stripe().paymentIntents.retrieve(intentId);
    } catch (readError) {
      if (stripeUnavailable(readError)) return unavailable(paymentId, attempt);
      throw readError;
    }
  }
  let code: string, message: string;
  if (intent.status === "canceled") {
    code = "canceled";
    message = "Canceled at Stripe: the payer chose another payment method";
  } else if (intent.status === "requires_payment_method") {
    const failure = intent.last_payment_error;
    code = failure?.decline_code || failure?.code || "payment_failed";
    message = withoutProcessorIds(failure?.message ?? "The payment failed");
  } else {
    return stillOpen(paymentId, attempt, intent.status);
  }
  await transaction(context, async (tx) => {
    await setRole(tx, "payment_service");
    return await rpc(tx, "record_funding_failure", [
      [paymentId, "uuid"],
      [attempt.attempt, "integer"],
      [code, "text"],
      [message.slice(0, 500), "text"],
    ]);
  });
  return null;
}

function unavailable(paymentId: string, attempt: Attempt): Response {
  return json(503, {
    code: "processor_unavailable",
    message: "Stripe could not be reached or failed; nothing is funded yet. Retrying is " +
      "safe: the same attempt, under the same idempotency key, is charged at most once.",
    milestone_payment_id: paymentId,
    attempt: attempt.attempt,
  });
}

/** The open attempt's PaymentIntent is charged or charging: nothing else is charged. */
function stillOpen(paymentId: string, attempt: Attempt, status: string): Response {
  return json(409, {
    code: "charge_in_progress",
    message: `Attempt ${attempt.attempt} of this payment is charged with another payment ` +
      `method and its PaymentIntent is ${status}: nothing else is charged. It is funded when ` +
      "Stripe confirms that charge.",
    milestone_payment_id: paymentId,
    attempt: attempt.attempt,
    payment_intent_id: attempt.payment_intent_id,
    payment_intent_status: status,
  });
}

function recordIntent(
  context: RequestContext,
  paymentId: string,
  attempt: Attempt,
  intentId: string,
): Promise<unknown> {
  return asService(context, (tx) =>
    rpc(tx, "record_payment_intent", [
      [paymentId, "uuid"],
      [attempt.attempt, "integer"],
      [intentId, "text"],
    ]));
}

export default serve(handle, { cors: true });
