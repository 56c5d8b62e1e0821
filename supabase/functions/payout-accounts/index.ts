/**
 * payout-accounts: a contractor's connected account at Stripe, made once, and a link to
 * Stripe's hosted onboarding of it.
 *
 * POST {"country"?: "US", "return_url"?: url, "refresh_url"?: url} with the user's JWT (aal2).
 * Its first database call, `public.begin_onboarding_payout_account` (as the user), commits
 * before Stripe is asked anything: every request counts towards the caller's
 * processor_accounts.onboard limit (429 past it, nothing asked of Stripe), needs aal2 and a
 * contractor (403 otherwise), and names the caller's recorded connected account, or the
 * account to make: its country and email, pinned for the attempt, and its idempotency key
 * (`user:<id>:connected_account`). Only when none is recorded does the function create an
 * Express account at Stripe (metadata `user_id`) under that key, so that a retried or
 * concurrent request gets the same account (Stripe keeps a key's answer for 24 hours), and
 * records it with `record_processor_account` as `payment_service`, the user's claims still
 * set. Then it asks Stripe for an onboarding link (Account Links).
 *
 * Answers 201 when Stripe made the account for this request, 200 when it existed (recorded, or
 * replayed by Stripe for the key): {account_id (the processor_accounts row; its id at Stripe is a
 * token, read by payment_service alone), verification_status, onboarding_url,
 * onboarding_url_expires_at}. 401 without a valid JWT; 403 at aal1 or for a user who is not a
 * contractor; 422 for a bad country or URL; 429 past the limit; 409 while Stripe is still
 * making the account for a concurrent request; 502 when Stripe refuses (a refusal of the
 * account is recorded, and the next request makes its next attempt under the next key) or
 * when the database did not record the account Stripe made (the next request finds it again
 * under the same key); 503 when Stripe cannot be reached (retrying is safe).
 */
import { requireUser } from "../_shared/auth.ts";
import { type RequestContext, requestContext, rpc, setRole, transaction } from "../_shared/db.ts";
import { isConnectionError, isPgError, withoutProcessorIds } from "../_shared/errors.ts";
import { optional } from "../_shared/env.ts";
import { serve } from "../_shared/serve.ts";
import { allowMethods, type Body, HttpError, json, readJsonObject } from "../_shared/http.ts";
import { isStripeError, Stripe, stripe, stripeUnavailable } from "../_shared/stripe.ts";
import { openToken, sealToken, storedLookupOf } from "../_shared/tokens.ts";

/** What begin_onboarding_payout_account answers. */
interface Onboarding {
  /** The recorded account, by its row (its token is read as payment_service). */
  account: string | null;
  verification_status: string | null;
  idempotency_key?: string;
  country?: string;
  email?: string | null;
}

/** The onboarding link's two URLs. */
interface LinkUrls {
  return_url: string;
  refresh_url: string;
}

const COUNTRY = /^[A-Z]{2}$/;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** `value` as an absolute URL a user may be sent to, or null. */
function safeUrl(value: string): URL | null {
  if (value.length > 2048) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  const secure = url.protocol === "https:" ||
    (url.protocol === "http:" && LOOPBACK.has(url.hostname));
  if (!secure || url.username || url.password || url.hash) return null;
  return url;
}

/**
 * The link's URLs: the request's when it names them, each in an allowed origin (the origins of
 * the configured URLs, and `PAYGUARD_ONBOARDING_ORIGINS`), else the configured ones
 * (`PAYGUARD_ONBOARDING_RETURN_URL`, `PAYGUARD_ONBOARDING_REFRESH_URL`). A user is never sent
 * to a site the project did not name.
 */
export function linkUrls(body: Body): LinkUrls {
  const configured: Record<keyof LinkUrls, string | undefined> = {
    return_url: optional("PAYGUARD_ONBOARDING_RETURN_URL"),
    refresh_url: optional("PAYGUARD_ONBOARDING_REFRESH_URL"),
  };
  const origins = new Set(
    (optional("PAYGUARD_ONBOARDING_ORIGINS") ?? "").split(",").map((o) => o.trim()).filter(
      Boolean,
    ),
  );
  for (const value of Object.values(configured)) {
    const url = value ? safeUrl(value) : null;
    if (url) origins.add(url.origin);
  }
  const urls = {} as LinkUrls;
  for (const name of ["return_url", "refresh_url"] as const) {
    const given = body[name];
    if (given === undefined || given === null) {
      const fallback = configured[name];
      if (!fallback || !safeUrl(fallback)) {
        throw new HttpError(422, "invalid_field", `${name} is required: none is configured`, {
          field: name,
        });
      }
      urls[name] = fallback;
      continue;
    }
    const url = typeof given === "string" ? safeUrl(given) : null;
    if (!url || !origins.has(url.origin)) {
      throw new HttpError(
        422,
        "invalid_field",
        `${name} must be an https URL of the app (an allowed origin)`,
        { field: name },
      );
    }
    urls[name] = url.href;
  }
  return urls;
}

/** The request's country (ISO 3166-1 alpha-2), or null to let the database choose. */
function countryField(body: Body): string | null {
  const value = body.country ?? null;
  if (value !== null && (typeof value !== "string" || !COUNTRY.test(value))) {
    throw new HttpError(422, "invalid_field", "country must be an ISO 3166-1 alpha-2 code", {
      field: "country",
    });
  }
  return value;
}

/**
 * A refusal that Stripe answered and keeps for its idempotency key (a 4xx other than an
 * authentication, idempotency or rate-limit error).
 */
function answeredRefusal(error: unknown): error is Stripe.errors.StripeError {
  if (!isStripeError(error) || stripeUnavailable(error)) return false;
  if (error.type === "StripeIdempotencyError") return false;
  return error.statusCode !== undefined && [400, 402, 403, 404].includes(error.statusCode);
}

/** Stripe's failure to answer `what`, as this function's error (nothing recorded). */
function stripeFailure(error: unknown, what: string): HttpError {
  if (
    stripeUnavailable(error) || (isStripeError(error) && error.statusCode === 429)
  ) {
    return new HttpError(503, "processor_unavailable", `Stripe could not ${what}; try again`);
  }
  if (isStripeError(error) && error.type === "StripeIdempotencyError") {
    return new HttpError(
      409,
      "onboarding_in_progress",
      "Your connected account is being made by another request; try again",
    );
  }
  return new HttpError(502, "processor_error", `Stripe refused to ${what}`, {
    processor_code: isStripeError(error) ? error.code ?? null : null,
  });
}

/** True when Stripe replayed its answer to an idempotency key (the account existed). */
function replayed(account: Stripe.Response<Stripe.Account>): boolean {
  // Deno's fetch client hands Stripe's headers over as a Headers object; others as a record.
  const headers: unknown = account.lastResponse?.headers;
  if (headers instanceof Headers) return headers.get("idempotent-replayed") === "true";
  if (typeof headers !== "object" || headers === null) return false;
  return Object.entries(headers).some(([name, value]) =>
    name.toLowerCase() === "idempotent-replayed" && value === "true"
  );
}

/** Make the account Stripe-side under the attempt's key; record a refusal Stripe answered. */
async function makeAccount(
  context: RequestContext,
  userId: string,
  onboarding: Onboarding,
): Promise<Stripe.Response<Stripe.Account>> {
  const key = onboarding.idempotency_key!;
  const params: Stripe.AccountCreateParams = {
    type: "express",
    country: onboarding.country!,
    capabilities: { transfers: { requested: true } },
    metadata: { user_id: userId },
  };
  if (onboarding.email) params.email = onboarding.email;
  try {
    return await stripe().accounts.create(params, { idempotencyKey: key });
  } catch (error) {
    if (answeredRefusal(error)) {
      await transaction(context, async (tx) => {
        await setRole(tx, "payment_service");
        await rpc(tx, "record_payout_account_refusal", [
          [userId, "uuid"],
          [key, "text"],
          [error.code ?? "processor_refused", "text"],
          [error.message.slice(0, 500), "text"],
        ]);
      });
    }
    throw stripeFailure(error, "make your connected account");
  }
}

/** The recorded account `rowId`'s id at Stripe, opened as payment_service. */
function recordedAccount(context: RequestContext, rowId: string): Promise<string> {
  return transaction(context, async (tx) => {
    await setRole(tx, "payment_service");
    const rows = await tx`
      select processor_account_id_sealed from public.processor_accounts
      where id = ${rowId}::uuid
    `;
    if (rows.length === 0) throw new Error(`connected account ${rowId} is not recorded`);
    return await openToken(rows[0].processor_account_id_sealed, {
      table: "processor_accounts",
      column: "processor_account_id",
      rowId,
    });
  });
}

/**
 * Record `accountId` as the user's (payment_service) by its lookup, then seal it for the row
 * the database answers with; its row and its verification as recorded.
 */
async function recordAccount(
  context: RequestContext,
  userId: string,
  accountId: string,
): Promise<{ id: string; verification_status: string }> {
  try {
    return await transaction(context, async (tx) => {
      await setRole(tx, "payment_service");
      const recorded = await rpc<{ id: string; verification_status: string }>(
        tx,
        "record_processor_account",
        [[userId, "uuid"], [await storedLookupOf(tx, accountId), "text"]],
      );
      // The row may have been recorded first by account.updated (by its lookup alone): it is
      // sealed here once, under the row's id.
      const { sealed } = await sealToken(accountId, {
        table: "processor_accounts",
        column: "processor_account_id",
        rowId: recorded.id,
      });
      await tx`
        update public.processor_accounts
        set processor_account_id_sealed = ${JSON.stringify(sealed)}::text::jsonb
        where id = ${recorded.id}::uuid and processor_account_id_sealed is null
      `;
      return { id: recorded.id, verification_status: recorded.verification_status };
    });
  } catch (error) {
    if (isConnectionError(error)) throw error;
    const detail = isPgError(error) || error instanceof HttpError
      ? withoutProcessorIds(error.message)
      : undefined;
    throw new HttpError(
      502,
      "account_not_recorded",
      "Stripe made your connected account but it could not be recorded; try again: the " +
        "same account is found again",
      { detail: detail ?? null },
    );
  }
}

export async function handle(req: Request): Promise<Response> {
  allowMethods(req, "POST");
  const caller = await requireUser(req);
  const body = await readJsonObject(req, true);
  const country = countryField(body);
  const urls = linkUrls(body);
  const context = requestContext(req, caller);
  const userId = caller.userId!;

  // Counted, aal2 and the role checked, in a transaction that commits before Stripe is asked.
  const onboarding = await transaction(
    context,
    (tx) => rpc<Onboarding>(tx, "begin_onboarding_payout_account", [[country, "text"]]),
  );
  let rowId = onboarding.account;
  let verification = onboarding.verification_status;
  let created = false;
  let accountId: string;
  if (rowId) {
    accountId = await recordedAccount(context, rowId);
  } else {
    const account = await makeAccount(context, userId, onboarding);
    created = !replayed(account);
    accountId = account.id;
    const recorded = await recordAccount(context, userId, accountId);
    rowId = recorded.id;
    verification = recorded.verification_status;
  }
  let link: Stripe.AccountLink;
  try {
    link = await stripe().accountLinks.create({
      account: accountId,
      type: "account_onboarding",
      return_url: urls.return_url,
      refresh_url: urls.refresh_url,
    });
  } catch (error) {
    throw stripeFailure(error, "make the onboarding link");
  }
  return json(created ? 201 : 200, {
    account_id: rowId,
    verification_status: verification,
    onboarding_url: link.url,
    onboarding_url_expires_at: new Date(link.expires_at * 1000).toISOString(),
  });
}

export default serve(handle, { cors: true });
