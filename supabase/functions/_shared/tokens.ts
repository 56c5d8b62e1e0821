/**
 * Processor tokens as the functions store and read them (docs/token-envelopes.md): each token
 * sealed for its row (envelope.ts, under PAYGUARD_TOKEN_KEYS) beside its lookup
 * (token_index.ts, under PAYGUARD_TOKEN_INDEX_KEYS). Only payment_service reads the sealed
 * columns; a function opens a token only to hand it to Stripe.
 */
import { decrypt, encrypt, type Envelope, EnvelopeError, KeySet, type Place } from "./envelope.ts";
import type { Tx } from "./db.ts";
import { INDEX_KEYS_VARIABLE, lookup, lookups } from "./token_index.ts";

export type { Envelope, Place };
export { EnvelopeError };

let envelopeKeys: KeySet | undefined;
let indexKeys: KeySet | undefined;

/** The key sets of the function's secrets, read once (a missing or bad set is an error). */
function keys(): { envelope: KeySet; index: KeySet } {
  envelopeKeys ??= KeySet.fromEnv();
  indexKeys ??= KeySet.fromEnv(undefined, INDEX_KEYS_VARIABLE);
  return { envelope: envelopeKeys, index: indexKeys };
}

/** A token sealed for its place and its lookup: the two values a row stores. */
export interface Sealed {
  sealed: Envelope;
  lookup: string;
}

/** `token` sealed for `place` under the current key, and its lookup under the current index key. */
export async function sealToken(token: string, place: Place): Promise<Sealed> {
  const { envelope, index } = keys();
  return { sealed: await encrypt(envelope, token, place), lookup: await lookup(index, token) };
}

/** The lookup of `token` under the current index key. */
export function lookupOf(token: string): Promise<string> {
  return lookup(keys().index, token);
}

/**
 * The lookup by which a row stores `token`: its lookup under the current index key, except
 * while the index is rebuilt under a new key (the function holds more than one index key):
 * then the one a row already stores for the token, under any of them
 * (`private.stored_token_lookup`, read in `tx` as payment_service), so that a token is matched,
 * and kept unique, whichever key its rows are under yet.
 */
export async function storedLookupOf(
  tx: Tx,
  token: string,
  index: KeySet = keys().index,
): Promise<string> {
  const current = await lookup(index, token);
  if (index.ids().length < 2) return current;
  // A batch of `keys reindex` moves lookups under an exclusive hold of this lock: the lookup
  // found here is the one the rest of this transaction matches and writes.
  await tx`select pg_advisory_xact_lock_shared(hashtext('payguard.token_reindex'))`;
  const candidates = await lookups(index, token);
  const [row] = await tx`
    select private.stored_token_lookup(
      array(select jsonb_array_elements_text(${JSON.stringify(candidates)}::text::jsonb))
    ) as found
  `;
  return typeof row?.found === "string" ? row.found : current;
}

/**
 * The token a row holds: its sealed value opened for `place`. A row with none (a customer or a
 * connected account known by its lookup alone), or whose sealed value does not open, is an
 * error that names the place only.
 */
export async function openToken(sealed: unknown, place: Place): Promise<string> {
  if (sealed === null || sealed === undefined) {
    throw new EnvelopeError(`${place.table}.${place.column} of row ${place.rowId} holds no token`);
  }
  try {
    return await decrypt(keys().envelope, sealed, place);
  } catch (error) {
    const reason = error instanceof EnvelopeError ? error.message : String(error);
    throw new EnvelopeError(
      `the token of ${place.table}.${place.column} of row ${place.rowId} does not open: ${reason}`,
    );
  }
}
