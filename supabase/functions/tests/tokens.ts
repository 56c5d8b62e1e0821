/**
 * Processor tokens in the tests, as the functions store them: a fixture row is written with
 * its token sealed for its row and its lookup (the functions' own code, under the tests' keys),
 * and a test reads a stored token back by opening it.
 */
import { lookupOf, openToken, type Place, sealToken } from "../_shared/tokens.ts";
import { db } from "./helpers.ts";

export { lookupOf };

/** `token` sealed for `place`, as jsonb text, and its lookup. */
export async function sealedFor(
  token: string,
  place: Place,
): Promise<{ sealed: string; lookup: string }> {
  const { sealed, lookup } = await sealToken(token, place);
  return { sealed: JSON.stringify(sealed), lookup };
}

/** The Stripe id of connected account row `rowId`, opened. */
export async function accountOfRow(rowId: string): Promise<string> {
  const [row] = await db`
    select processor_account_id_sealed as sealed from public.processor_accounts
    where id = ${rowId}
  `;
  if (!row) throw new Error(`no connected account ${rowId}`);
  return await openToken(row.sealed, {
    table: "processor_accounts",
    column: "processor_account_id",
    rowId,
  });
}

/** `user`'s connected accounts, opened, with their verification, oldest first. */
export async function accountsOf(
  user: string,
): Promise<{ id: string; account: string; verification_status: string }[]> {
  const rows = await db`
    select id::text, verification_status from public.processor_accounts
    where user_id = ${user} order by created_at, id
  `;
  return await Promise.all(rows.map(async (row) => ({
    id: row.id as string,
    account: await accountOfRow(row.id as string),
    verification_status: row.verification_status as string,
  })));
}

/** Record `account` as `user`'s connected account, sealed, as payout-accounts does; its row. */
export async function recordAccount(user: string, account: string): Promise<string> {
  const id = crypto.randomUUID();
  const { sealed, lookup } = await sealedFor(account, {
    table: "processor_accounts",
    column: "processor_account_id",
    rowId: id,
  });
  await db`
    insert into public.processor_accounts (
      id, user_id, processor_account_id_sealed, processor_account_id_lookup
    ) values (${id}, ${user}, ${sealed}::text::jsonb, ${lookup})
  `;
  return id;
}

/** A payout method of `user` to `external` on `account` (recorded first), as payout-methods adds it. */
export async function addPayoutMethod(
  user: string,
  account: string,
  external: string,
  currency = "USD",
): Promise<string> {
  const [recorded] = await db`
    select id::text from public.processor_accounts
    where processor_account_id_lookup = ${await lookupOf(account)}
  `;
  if (!recorded) await recordAccount(user, account);
  const id = crypto.randomUUID();
  const { sealed, lookup } = await sealedFor(external, {
    table: "payout_methods",
    column: "processor_external_account_id",
    rowId: id,
  });
  await db`
    insert into public.payout_methods (
      id, user_id, type, currency, processor_external_account_id_sealed,
      processor_external_account_id_lookup, processor_account_id_lookup
    ) values (
      ${id}, ${user}, 'bank_account', ${currency}, ${sealed}::text::jsonb, ${lookup},
      ${await lookupOf(account)}
    )
  `;
  return id;
}

/**
 * The processor's verification of `account`, as account.updated records it (as of now, so that
 * the account's earlier events, delivered late, are older and change nothing).
 */
export async function verifyAccount(account: string): Promise<void> {
  const accountLookup = await lookupOf(account);
  await db`
    update public.processor_accounts set verification_status = 'verified', state_as_of = now()
    where processor_account_id_lookup = ${accountLookup}
  `;
  await db`
    update public.payout_methods set verification_status = 'verified'
    where processor_account_id_lookup = ${accountLookup}
  `;
}

/** `user`'s recorded Stripe customer, opened; null when none is recorded. */
export async function customerOf(user: string): Promise<string | null> {
  const [row] = await db`
    select processor_customer_id_sealed as sealed from public.processor_customers
    where user_id = ${user}
  `;
  if (!row) return null;
  return await openToken(row.sealed, {
    table: "processor_customers",
    column: "processor_customer_id",
    rowId: user,
  });
}
