/**
 * An event's text as PostgreSQL's jsonb can hold it.
 *
 * JSON may carry text that jsonb refuses: the NUL character (`\u0000`) and a UTF-16 surrogate
 * that pairs with nothing (`\ud800`). Such text in a Stripe event (a billing name or a
 * description a payer typed) made the cast to jsonb fail before the database could record
 * anything, so the event was answered 500 on every delivery and never recorded. Those code
 * points are replaced by U+FFFD, the replacement character, in every string (keys too), and the
 * event says how many were replaced (`payguard_replaced_characters`), as a redaction of card
 * data says what it removed; ids, amounts and currencies never hold them. Any other event text
 * is passed on exactly as Stripe sent it.
 */

/** The character that stands in for one that jsonb cannot hold. */
export const REPLACEMENT = "\uFFFD";

/** The top-level field that counts the characters replaced. */
export const REPLACED_FIELD = "payguard_replaced_characters";

/** NUL, a high surrogate with no low one after it, a low surrogate with no high one before. */
// deno-lint-ignore no-control-regex -- NUL is the very character sought
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Only JSON text with one of these escapes can hold what jsonb refuses. */
const SUSPECT = /\\u(?:0000|[dD][89a-fA-F])/;

/** `raw` (an event's JSON text) as jsonb can hold it, and how many characters were replaced. */
export function storableEvent(raw: string): { text: string; replaced: number } {
  if (!SUSPECT.test(raw)) return { text: raw, replaced: 0 };
  let replaced = 0;
  const clean = (text: string): string =>
    text.replace(UNSTORABLE, () => {
      replaced += 1;
      return REPLACEMENT;
    });
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return clean(value);
    if (Array.isArray(value)) return value.map(walk);
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(
        Object.entries(value as Record<string, unknown>).map(([key, item]) => [
          clean(key),
          walk(item),
        ]),
      );
    }
    return value;
  };
  const event = walk(JSON.parse(raw));
  if (replaced === 0 || event === null || typeof event !== "object" || Array.isArray(event)) {
    return { text: raw, replaced: 0 };
  }
  return { text: JSON.stringify({ ...event, [REPLACED_FIELD]: replaced }), replaced };
}
