/**
 * payment-methods: save a card the user entered, bound to them by a SetupIntent.
 *
 * Two requests, each with the user's JWT (aal2). Each one's first database call,
 * `public.begin_saving_payment_method`, commits before Stripe is asked anything: every request
 * counts towards the caller's payment_methods.save limit (429 past it, nothing asked of
 * Stripe), needs aal2 (403 otherwise), and names the caller's recorded customer.
 *
 * 1. POST {} : the function makes a SetupIntent for the user's Stripe customer (created and
 *    recorded on first use) and answers 200 {setup_intent_id, client_secret}. The client
 *    confirms it with the card the user types (Stripe.js); Stripe attaches that card to the
 *    customer. The function never sees card data.
 * 2. POST {"setup_intent": "seti_…", "nickname"?: text, "is_default"?: boolean}: the function
 *    takes the card of that SetupIntent only when the SetupIntent is the user's customer's and
 *    succeeded, and its card was tokenised for it (not before it was made); it copies brand,
 *    last4 and expiry from Stripe, and inserts the row as `payment_service` in a transaction
 *    whose claims are the user's, so the database checks the owner, aal2 and the customer.
 *
 * A bare `pm_…` is no longer taken: its id is all it takes to name a card someone else
 * tokenised. Answers 201 with the row; 401 without a valid JWT; 403 for a SetupIntent or card
 * of another customer, or when the database refuses (e.g. aal1); 409 when the SetupIntent has
 * not succeeded (`setup_incomplete`) or the card is already saved; 422 for a body naming a
 * `payment_method`, a SetupIntent Stripe does not know, or a method that is not a card; 429
 * past the limit; 502/503 when Stripe fails.
 */
import { type Caller, requireUser } from "../_shared/auth.ts";
import {
  type RequestContext,
  requestContext,
  rpc,
  setRole,
  transaction,
  type Tx,
} from "../_shared/db.ts";
import { isPgError, withoutProcessorIds } from "../_shared/errors.ts";
import { serve } from "../_shared/serve.ts";
import {
  allowMethods,
  type Body,
  HttpError,
  json,
  readJsonObject,
  stringField,
} from "../_shared/http.ts";
import { isStripeError, Stripe, stripe, stripeUnavailable } from "../_shared/stripe.ts";
import { openToken, sealToken, storedLookupOf } from "../_shared/tokens.ts";

const SETUP_INTENT = /^seti_[A-Za-z0-9]{6,}$/;

/** The Stripe answer for a failed call, as this function's error. */
export function stripeFailure(
  error: unknown,
  what: string,
  unknown = "payment_method",
): HttpError {
  if (stripeUnavailable(error)) {
    return new HttpError(503, "processor_unavailable", `Stripe could not ${what}; try again`);
  }
  if (isStripeError(error) && error.statusCode === 404) {
    return new HttpError(
      422,
      `${unknown}_unknown`,
      `Stripe knows no such ${unknown.replace("_", " ")}`,
    );
  }
  if (isStripeError(error) && error.type === "StripeCardError") {
    return new HttpError(402, error.code ?? "card_declined", withoutProcessorIds(error.message));
  }
  if (isStripeError(error)) {
    return new HttpError(502, "processor_error", `Stripe refused to ${what}`, {
      processor_code: error.code ?? null,
    });
  }
  return new HttpError(502, "processor_error", `Stripe could not ${what}`);
}

/** The user's recorded customer, opened (payment_service reads it), or null. */
async function recordedCustomer(tx: Tx, userId: string): Promise<string | null> {
  const rows = await tx`
    select processor_customer_id_sealed from public.processor_customers
    where user_id = ${userId}::uuid
  `;
  if (rows.length === 0) return null;
  return await openToken(rows[0].processor_customer_id_sealed, {
    table: "processor_customers",
    column: "processor_customer_id",
    rowId: userId,
  });
}

/** The user's recorded customer, read as payment_service in a transaction of its own. */
function readCustomer(context: RequestContext, userId: string): Promise<string | null> {
  return transaction(context, async (tx) => {
    await setRole(tx, "payment_service");
    return await recordedCustomer(tx, userId);
  });
}

/**
 * The user's Stripe customer: the recorded one (begin_saving_payment_method says whether there
 * is one), else a new one, recorded sealed with its lookup.
 */
async function customerFor(
  context: RequestContext,
  caller: Caller,
  isRecorded: boolean,
): Promise<string> {
  const recorded = isRecorded ? await readCustomer(context, caller.userId!) : null;
  if (recorded) return recorded;
  let customer: Stripe.Customer;
  try {
    customer = await stripe().customers.create(
      { metadata: { user_id: caller.userId! } },
      { idempotencyKey: `user:${caller.userId}:customer` },
    );
  } catch (error) {
    throw stripeFailure(error, "create the customer");
  }
  const { sealed } = await sealToken(customer.id, {
    table: "processor_customers",
    column: "processor_customer_id",
    rowId: caller.userId!,
  });
  return await transaction(context, async (tx) => {
    await setRole(tx, "payment_service");
    const lookup = await storedLookupOf(tx, customer.id);
    await tx`
      insert into public.processor_customers (
        user_id, processor, processor_customer_id_sealed, processor_customer_id_lookup
      )
      values (
        ${caller.userId!}::uuid, 'stripe', ${JSON.stringify(sealed)}::text::jsonb, ${lookup}
      )
      on conflict (user_id) do nothing
    `;
    const recorded = await recordedCustomer(tx, caller.userId!);
    if (!recorded) throw new Error("processor customer not recorded");
    return recorded;
  });
}

/** The card's type for the database: debit or credit. */
function methodType(method: Stripe.PaymentMethod): string {
  return method.card?.funding === "debit" ? "debit_card" : "credit_card";
}

/** The id of an expandable Stripe field. */
function idOf(value: string | { id: string } | null | undefined): string | null {
  return typeof value === "string" ? value : value?.id ?? null;
}

/** A SetupIntent for `customer`, for the client to confirm with the card the user enters. */
async function newSetupIntent(customer: string, caller: Caller): Promise<Response> {
  let intent: Stripe.SetupIntent;
  try {
    intent = await stripe().setupIntents.create({
      customer,
      usage: "off_session",
      metadata: { user_id: caller.userId! },
    });
  } catch (error) {
    throw stripeFailure(error, "prepare the card's setup");
  }
  return json(200, {
    setup_intent_id: intent.id,
    client_secret: intent.client_secret,
    status: intent.status,
  });
}

/**
 * The card of SetupIntent `setupIntentId`, when it is `customer`'s, succeeded, and its card
 * was tokenised for it; attached to `customer`.
 */
async function cardOfSetupIntent(
  setupIntentId: string,
  customer: string | null,
): Promise<Stripe.PaymentMethod> {
  let intent: Stripe.SetupIntent;
  try {
    intent = await stripe().setupIntents.retrieve(setupIntentId);
  } catch (error) {
    throw stripeFailure(error, "find the SetupIntent", "setup_intent");
  }
  if (customer === null || idOf(intent.customer) !== customer) {
    throw new HttpError(403, "PT403", "This SetupIntent was not made for you");
  }
  const paymentMethodId = idOf(intent.payment_method);
  if (intent.status !== "succeeded" || paymentMethodId === null) {
    throw new HttpError(409, "setup_incomplete", "The card's setup has not succeeded", {
      setup_intent_status: intent.status,
    });
  }
  let method: Stripe.PaymentMethod;
  try {
    method = await stripe().paymentMethods.retrieve(paymentMethodId);
  } catch (error) {
    throw stripeFailure(error, "find the payment method");
  }
  if (method.type !== "card" || !method.card) {
    throw new HttpError(422, "payment_method_not_card", "Only cards can be saved");
  }
  // A card tokenised before the SetupIntent was made was not entered for it: its id may have
  // come from anyone.
  if (method.created < intent.created) {
    throw new HttpError(
      403,
      "PT403",
      "This card was not entered for this SetupIntent: confirm the SetupIntent with the card",
    );
  }
  const owner = idOf(method.customer);
  if (owner && owner !== customer) {
    throw new HttpError(403, "PT403", "This payment method belongs to another customer");
  }
  if (!owner) {
    // Stripe attaches the card of a succeeded SetupIntent to its customer; should it not
    // have yet, the function does.
    try {
      method = await stripe().paymentMethods.attach(paymentMethodId, { customer }, {
        idempotencyKey: `payment_method:${paymentMethodId}:attach:${customer}`,
      });
    } catch (error) {
      throw stripeFailure(error, "attach the payment method");
    }
  }
  return method;
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const caller = await requireUser(req);
  const body = await readJsonObject(req);
  if (body.payment_method !== undefined) {
    throw new HttpError(
      422,
      "setup_intent_required",
      "A card is saved through a SetupIntent: ask for one (POST {}), confirm it with the card, " +
        "then name it (setup_intent)",
      { field: "payment_method" },
    );
  }
  const setupIntentId = body.setup_intent === undefined
    ? null
    : stringField(body, "setup_intent", SETUP_INTENT, "a Stripe seti_… id");
  const nickname = body.nickname ?? null;
  if (nickname !== null && typeof nickname !== "string") {
    throw new HttpError(422, "invalid_field", "nickname must be text", { field: "nickname" });
  }
  const isDefault = body.is_default ?? false;
  if (typeof isDefault !== "boolean") {
    throw new HttpError(422, "invalid_field", "is_default must be a boolean", {
      field: "is_default",
    });
  }
  const context = requestContext(req, caller);

  // Counted, and aal2 checked, in a transaction that commits before Stripe is asked anything.
  const allowed = await transaction(
    context,
    (tx) => rpc<{ customer_recorded: boolean }>(tx, "begin_saving_payment_method", []),
  );
  if (setupIntentId === null) {
    return await newSetupIntent(
      await customerFor(context, caller, allowed.customer_recorded),
      caller,
    );
  }
  const customer = allowed.customer_recorded ? await readCustomer(context, caller.userId!) : null;
  const method = await cardOfSetupIntent(setupIntentId, customer);
  const card = method.card!;
  // The row's id is chosen here: its sealed token names it.
  const id = crypto.randomUUID();
  const { sealed } = await sealToken(method.id, {
    table: "payment_methods",
    column: "processor_payment_method_id",
    rowId: id,
  });
  let row: Body;
  try {
    row = await transaction(context, async (tx) => {
      await setRole(tx, "payment_service");
      const lookup = await storedLookupOf(tx, method.id);
      const customerLookup = await storedLookupOf(tx, customer!);
      const rows = await tx`
        insert into public.payment_methods (
          id, user_id, type, brand, last4, exp_month, exp_year, nickname, is_default,
          processor_payment_method_id_sealed, processor_payment_method_id_lookup,
          processor_customer_id_lookup
        ) values (
          ${id}::uuid, ${caller.userId!}::uuid, ${methodType(method)}::public.payment_method_type,
          ${card.brand}, ${card.last4}, ${card.exp_month}, ${card.exp_year},
          ${nickname as string | null}, ${isDefault}, ${JSON.stringify(sealed)}::text::jsonb,
          ${lookup}, ${customerLookup}
        )
        returning id, user_id, type, brand, last4, exp_month, exp_year, nickname, is_default,
          created_at
      `;
      return rows[0] as Body;
    });
  } catch (error) {
    // The card of the caller's own SetupIntent, saved already: a unique key's answer would
    // name its token.
    if (isPgError(error) && error.code === "23505") {
      throw new HttpError(409, "23505", "This card is already saved");
    }
    throw error;
  }
  return json(201, row);
}

export default serve(handle, { cors: true });
