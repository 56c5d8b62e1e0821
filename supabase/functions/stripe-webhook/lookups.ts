/**
 * An event as the database may keep it: no processor token in it.
 *
 * A Stripe event names the tokens of the objects it is about: the connected account it
 * happened on (`account`), the account an account.updated describes, a PaymentIntent's
 * payment method and customer, a payout's bank account, and the same ids inside the words of a
 * failure message. Each is a credential (docs/token-envelopes.md), so each is replaced by its
 * lookup, wherever it is (a whole value, a word of a text, a key), before the event reaches
 * `apply_stripe_event`: the database matches accounts by lookup, and the event it keeps names
 * no token. References that are not credentials (`pi_`, `ch_`, `po_`, `tr_`, `evt_`) stay.
 * An event with no token is passed on exactly as Stripe sent it.
 */
import { lookupOf } from "../_shared/tokens.ts";

/**
 * A processor token: its kind, not glued to a letter or digit before it, then an id of at least
 * eight letters or digits with a capital or a digit among them (Stripe's ids are random), so
 * that a word such as `card_present` is not one. The database refuses a payload that still
 * holds one (private.holds_processor_token, the same pattern).
 */
const TOKEN = /(?<![A-Za-z0-9])(?:pm|cus|acct|ba|card)_(?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]{8,}/g;

/** Only JSON text with a token's kind in it, or an escape, can name one once decoded. */
const MAY_NAME_A_TOKEN = /(?:pm|cus|acct|ba|card)_|\\u/;

/** Every string of `value` (keys too), in turn. */
function* strings(value: unknown): Generator<string> {
  if (typeof value === "string") {
    yield value;
  } else if (Array.isArray(value)) {
    for (const item of value) yield* strings(item);
  } else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      yield key;
      yield* strings(item);
    }
  }
}

/** `value` with `replace` applied to every string of it (keys too). */
function mapStrings(value: unknown, replace: (text: string) => string): unknown {
  if (typeof value === "string") return replace(value);
  if (Array.isArray(value)) return value.map((item) => mapStrings(item, replace));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map((
        [key, item],
      ) => [replace(key), mapStrings(item, replace)]),
    );
  }
  return value;
}

/** The tokens `value` names, each once. */
export function tokensIn(value: unknown): Set<string> {
  const found = new Set<string>();
  for (const text of strings(value)) {
    for (const match of text.matchAll(TOKEN)) found.add(match[0]);
  }
  return found;
}

/**
 * `text` (an event's JSON) with every processor token replaced by its lookup under the current
 * index key (`lookup`, for tests: `lookupOf`); `text` itself when it names none.
 */
export async function withLookups(
  text: string,
  lookup: (token: string) => Promise<string> = lookupOf,
): Promise<string> {
  if (!MAY_NAME_A_TOKEN.test(text)) return text;
  const event: unknown = JSON.parse(text);
  const tokens = tokensIn(event);
  if (tokens.size === 0) return text;
  const lookups = new Map<string, string>();
  for (const token of tokens) lookups.set(token, await lookup(token));
  return JSON.stringify(
    mapStrings(event, (value) => value.replace(TOKEN, (token) => lookups.get(token)!)),
  );
}
