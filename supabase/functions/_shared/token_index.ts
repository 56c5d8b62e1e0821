/**
 * The keyed blind index of processor tokens: what keeps "one row per Stripe id" and lets
 * payment_service and support find a row by its Stripe id, without the database holding the id
 * or the key. python/payguard/token_index.py computes the same; both pass the lookups in
 * tests/data/token-envelope-vectors.json.
 *
 * A lookup is `kid:base64url(HMAC-SHA-256(key, "payguard.token-index" 0x1F "1" 0x1F token))`,
 * under PAYGUARD_TOKEN_INDEX_KEYS (not the envelopes' keys), its key id kept in the value so that
 * a row written under an older index key is still found while the index is rebuilt.
 */
import { b64encode, KeySet, utf8 } from "./envelope.ts";

export const INDEX_KEYS_VARIABLE = "PAYGUARD_TOKEN_INDEX_KEYS";
const DOMAIN = "payguard.token-index\x1f1\x1f";

/** The blind index of `token` under key `kid` (the current index key by default). */
export async function lookup(keys: KeySet, token: string, kid = keys.current): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    keys.key(kid),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const digest = await crypto.subtle.sign("HMAC", key, utf8(DOMAIN + token, "the token"));
  return `${kid}:${b64encode(new Uint8Array(digest))}`;
}

/** The blind index of `token` under every index key, the current first. */
export function lookups(keys: KeySet, token: string): Promise<string[]> {
  return Promise.all(keys.ids().map((kid) => lookup(keys, token, kid)));
}
