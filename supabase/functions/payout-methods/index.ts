/**
 * payout-methods: add a payout method, an external account of the contractor's own connected
 * account, as Stripe reports it.
 *
 * POST {"external_account": "ba_…"|"card_…", "nickname"?: text, "is_default"?: boolean} with
 * the user's JWT (aal2: refused before Stripe is asked otherwise). The function opens the
 * caller's recorded connected account (as payment_service), asks Stripe for that external
 * account of it, and inserts the row as `payment_service` in a transaction whose claims are
 * the user's (the database checks the owner, aal2 and the account again): its type, bank or
 * brand, last4 and currency are Stripe's, never the client's; the external account is sealed
 * for its row, with the lookups of both ids.
 *
 * An external account that is not one of the caller's account's is a 403, the same answer
 * whether it is another user's, one Stripe does not know, or one no one registered: naming
 * another user's tells nothing. Answers 201 with the row (id, type, bank_name, last4, currency,
 * nickname, is_default, verification_status, created_at; never a processor id); 401 without a
 * valid JWT; 403 at aal1 or for an external account not of the caller's account; 409
 * `account_required` before onboarding (payout-accounts), when the method is already saved, or
 * for a second default (`23505`, as the database words it);
 * 422 for a malformed body; 502/503 when Stripe fails.
 */
import { requireUser } from "../_shared/auth.ts";
import { type RequestContext, requestContext, setRole, transaction } from "../_shared/db.ts";
import { isPgError } from "../_shared/errors.ts";
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

const EXTERNAL_ACCOUNT = /^(ba|card)_[A-Za-z0-9]{6,}$/;
/** The unique keys that a payout method saved twice breaks. */
const SAME_ACCOUNT = new Set(["payout_methods_processor_external_account_id_lookup_key"]);

/** The caller's recorded connected account, opened as payment_service; null before onboarding. */
function recordedAccount(context: RequestContext, userId: string): Promise<string | null> {
  return transaction(context, async (tx) => {
    await setRole(tx, "payment_service");
    const rows = await tx`
      select id::text as id, processor_account_id_sealed as sealed
      from public.processor_accounts
      where user_id = ${userId}::uuid
      order by created_at, id
      limit 1
    `;
    if (rows.length === 0) return null;
    return await openToken(rows[0].sealed, {
      table: "processor_accounts",
      column: "processor_account_id",
      rowId: String(rows[0].id),
    });
  });
}

/** The external account `id` of `account` at Stripe; 403 when it is not one of its. */
async function externalAccountOf(
  account: string,
  id: string,
): Promise<Stripe.BankAccount | Stripe.Card> {
  try {
    return await stripe().accounts.retrieveExternalAccount(account, id);
  } catch (error) {
    if (stripeUnavailable(error)) {
      throw new HttpError(503, "processor_unavailable", "Stripe could not be reached; try again");
    }
    if (isStripeError(error) && (error.statusCode === 404 || error.code === "resource_missing")) {
      throw new HttpError(
        403,
        "PT403",
        "This is not an external account of your connected account",
      );
    }
    throw new HttpError(502, "processor_error", "Stripe refused to find the external account", {
      processor_code: isStripeError(error) ? error.code ?? null : null,
    });
  }
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const caller = await requireUser(req);
  const body = await readJsonObject(req);
  const externalId = stringField(
    body,
    "external_account",
    EXTERNAL_ACCOUNT,
    "a Stripe ba_… or card_… id",
  );
  const nickname = body.nickname ?? null;
  if (nickname !== null && (typeof nickname !== "string" || nickname.length > 100)) {
    throw new HttpError(422, "invalid_field", "nickname must be text of 100 characters at most", {
      field: "nickname",
    });
  }
  const isDefault = body.is_default ?? false;
  if (typeof isDefault !== "boolean") {
    throw new HttpError(422, "invalid_field", "is_default must be a boolean", {
      field: "is_default",
    });
  }
  if (caller.claims.aal !== "aal2") {
    throw new HttpError(403, "PT403", "Adding a payout method needs multi-factor authentication", {
      hint: "verify a second factor, then retry",
    });
  }
  const context = requestContext(req, caller);
  const userId = caller.userId!;
  const account = await recordedAccount(context, userId);
  if (account === null) {
    throw new HttpError(
      409,
      "account_required",
      "Onboard for payouts first (payout-accounts): a payout method is an external account of " +
        "your connected account",
    );
  }
  const external = await externalAccountOf(account, externalId);
  const bank = external.object === "bank_account" ? external as Stripe.BankAccount : null;
  const card = external.object === "card" ? external as Stripe.Card : null;
  const id = crypto.randomUUID();
  const { sealed } = await sealToken(external.id, {
    table: "payout_methods",
    column: "processor_external_account_id",
    rowId: id,
  });
  try {
    const row = await transaction(context, async (tx) => {
      await setRole(tx, "payment_service");
      const lookup = await storedLookupOf(tx, external.id);
      const accountLookup = await storedLookupOf(tx, account);
      const rows = await tx`
        insert into public.payout_methods (
          id, user_id, type, bank_name, last4, currency, nickname, is_default,
          processor_external_account_id_sealed, processor_external_account_id_lookup,
          processor_account_id_lookup
        ) values (
          ${id}::uuid, ${userId}::uuid,
          ${card ? "debit_card" : "bank_account"}::public.payout_method_type,
          ${bank?.bank_name ?? card?.brand ?? null}, ${external.last4},
          ${String(external.currency ?? "").toUpperCase()}, ${nickname as string | null},
          ${isDefault}, ${JSON.stringify(sealed)}::text::jsonb, ${lookup}, ${accountLookup}
        )
        returning id, type, bank_name, last4, currency, nickname, is_default,
          verification_status, created_at
      `;
      return rows[0] as Body;
    });
    return json(201, row);
  } catch (error) {
    // The external account is the caller's own (Stripe said so): a duplicate is theirs.
    if (
      isPgError(error) && error.code === "23505" && SAME_ACCOUNT.has(error.constraint_name ?? "")
    ) {
      throw new HttpError(409, "23505", "This payout method is already saved");
    }
    throw error;
  }
}

export default serve(handle, { cors: true });
