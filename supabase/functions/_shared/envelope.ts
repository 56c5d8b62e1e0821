/**
 * Envelope encryption of processor tokens (pm_, cus_, acct_, ba_/card_ ids) where the keys live:
 * here, in the functions' secrets, never in the database. The CLI's python/payguard/envelope.py
 * is the same; both pass the vectors in tests/data/token-envelope-vectors.json.
 *
 * Each value gets a fresh 256-bit data key and a fresh 96-bit nonce: AES-256-GCM encrypts the
 * token under the data key, with additional authenticated data naming the table, column and row
 * it belongs to, so a ciphertext copied onto another row or column does not decrypt. The data
 * key is wrapped (AES-KW, RFC 3394) under the key-encryption key its key id names. Envelope
 * fields are base64url without padding; the ciphertext ends with the 16-byte GCM tag.
 *
 * PAYGUARD_TOKEN_KEYS holds `kid:base64url-of-32-bytes` entries, comma- or line-separated: the
 * first encrypts, every one decrypts (a rotation in progress).
 */

export const VERSION = 1;
export const ALGORITHM = "A256GCM+A256KW";
export const KEYS_VARIABLE = "PAYGUARD_TOKEN_KEYS";
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const FIELDS = ["v", "alg", "kid", "wrapped_key", "nonce", "ciphertext"] as const;
/** Bytes WebCrypto takes: backed by an ArrayBuffer (not a shared one). */
export type Bytes = Uint8Array<ArrayBuffer>;

/** A key set or an envelope that cannot be used: says which and why, never a key or a token. */
export class EnvelopeError extends Error {
  override name = "EnvelopeError";
}

export interface Envelope {
  v: number;
  alg: string;
  kid: string;
  wrapped_key: string;
  nonce: string;
  ciphertext: string;
}

/** Where a token is kept: its ciphertext decrypts there only. */
export interface Place {
  table: string;
  column: string;
  rowId: string;
}

export function b64encode(bytes: Bytes): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * The bytes of canonical base64url text (no padding, unused bits zero): any other text, even
 * one that decodes to the same bytes, is refused, so that an envelope has one form.
 */
export function b64decode(text: unknown, what: string): Bytes {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new EnvelopeError(`${what} is not base64url text`);
  }
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  if (b64encode(bytes) !== text) throw new EnvelopeError(`${what} is not canonical base64url text`);
  return bytes;
}

export function utf8(text: string, what: string): Bytes {
  if (!text.isWellFormed()) {
    throw new EnvelopeError(`${what} is not text: it holds a lone surrogate`);
  }
  return new TextEncoder().encode(text);
}

/** Spaces, tabs and "\r" around an entry of a key set: as envelope.py strips them. */
function stripBlanks(text: string): string {
  return text.replace(/^[ \t\r]+|[ \t\r]+$/g, "");
}

/** Key-encryption keys by id; `current` encrypts, every one decrypts. */
export class KeySet {
  private constructor(readonly current: string, private readonly keys: Map<string, Bytes>) {}

  static parse(text: string, source = KEYS_VARIABLE): KeySet {
    const entries = text.split("\n")
      .filter((line) => !stripBlanks(line).startsWith("#"))
      .flatMap((line) => line.split(","))
      .map(stripBlanks)
      .filter((entry) => entry !== "");
    if (entries.length === 0) {
      throw new EnvelopeError(`${source} holds no key: write kid:base64url-of-32-bytes`);
    }
    const keys = new Map<string, Bytes>();
    entries.forEach((entry, index) => {
      const colon = entry.indexOf(":");
      const kid = colon < 0 ? "" : entry.slice(0, colon);
      if (colon < 0 || !KEY_ID.test(kid)) {
        throw new EnvelopeError(
          `entry ${index + 1} of ${source} is not kid:base64url (a key id is 1 to 64 letters, ` +
            "digits, '_', '.' or '-')",
        );
      }
      const key = b64decode(entry.slice(colon + 1), `key ${kid} in ${source}`);
      if (key.length !== KEY_BYTES) {
        throw new EnvelopeError(
          `key ${kid} in ${source} is ${key.length} bytes; an AES-256 key is ${KEY_BYTES}`,
        );
      }
      if (keys.has(kid)) throw new EnvelopeError(`key ${kid} appears twice in ${source}`);
      keys.set(kid, key);
    });
    return new KeySet(keys.keys().next().value!, keys);
  }

  static fromEnv(
    env: (name: string) => string | undefined = (n) => Deno.env.get(n),
    variable = KEYS_VARIABLE,
  ): KeySet {
    const text = env(variable);
    if (!text) {
      throw new EnvelopeError(
        `${variable} is not set: processor tokens cannot be encrypted, read or looked up ` +
          "(set it with supabase secrets set)",
      );
    }
    return KeySet.parse(text, variable);
  }

  ids(): string[] {
    return [...this.keys.keys()];
  }

  /** This set with `kid` as the current key (the shared vectors name theirs). */
  withCurrent(kid: string): KeySet {
    this.key(kid);
    return new KeySet(kid, this.keys);
  }

  key(kid: string): Bytes {
    const found = this.keys.get(kid);
    if (found === undefined) {
      throw new EnvelopeError(
        `no key '${kid}' among the keys given (${this.ids().join(", ")}): it was retired, ` +
          "or the keys are another environment's",
      );
    }
    return found;
  }
}

/** What binds a ciphertext to its place: the table, the column and the row's id. */
export function associatedData(place: Place): Bytes {
  for (
    const [name, value] of [["table", place.table], ["column", place.column], [
      "row id",
      place.rowId,
    ]]
  ) {
    if (!value || value.includes("\x1f")) {
      throw new EnvelopeError(`an envelope's ${name} must be a non-empty name`);
    }
  }
  return new TextEncoder().encode(
    ["payguard.token", String(VERSION), place.table, place.column, place.rowId].join("\x1f"),
  );
}

function wrappingKey(bytes: Bytes): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", bytes, "AES-KW", false, ["wrapKey", "unwrapKey"]);
}

/** The envelope of `plaintext` for its place, under the current key, with a fresh data key and
 * nonce. */
export function encrypt(keys: KeySet, plaintext: string, place: Place): Promise<Envelope> {
  return seal(keys, plaintext, place, {
    dataKey: crypto.getRandomValues(new Uint8Array(KEY_BYTES)),
    nonce: crypto.getRandomValues(new Uint8Array(NONCE_BYTES)),
  });
}

/**
 * `encrypt` with the data key and nonce given: for the shared test vectors only (a data key and
 * nonce used twice would break GCM).
 */
export async function seal(
  keys: KeySet,
  plaintext: string,
  place: Place,
  fixed: { dataKey: Bytes; nonce: Bytes },
): Promise<Envelope> {
  const { dataKey: keyBytes, nonce } = fixed;
  if (keyBytes.length !== KEY_BYTES || nonce.length !== NONCE_BYTES) {
    throw new EnvelopeError("a data key is 32 bytes and a nonce 12");
  }
  const dataKey = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", true, ["encrypt"]);
  const ciphertext = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: associatedData(place), tagLength: 128 },
    dataKey,
    utf8(plaintext, "the token"),
  );
  const wrapped = await crypto.subtle.wrapKey(
    "raw",
    dataKey,
    await wrappingKey(keys.key(keys.current)),
    "AES-KW",
  );
  return {
    v: VERSION,
    alg: ALGORITHM,
    kid: keys.current,
    wrapped_key: b64encode(new Uint8Array(wrapped)),
    nonce: b64encode(nonce),
    ciphertext: b64encode(new Uint8Array(ciphertext)),
  };
}

/** The token an envelope holds, when it is whole and belongs to `place`. */
export async function decrypt(keys: KeySet, envelope: unknown, place: Place): Promise<string> {
  if (typeof envelope !== "object" || envelope === null || Array.isArray(envelope)) {
    throw new EnvelopeError("an envelope is a JSON object");
  }
  const fields = envelope as Record<string, unknown>;
  const missing = FIELDS.filter((name) => !(name in fields));
  if (missing.length > 0) throw new EnvelopeError(`the envelope lacks ${missing.join(", ")}`);
  if (fields.v !== VERSION || fields.alg !== ALGORITHM) {
    throw new EnvelopeError(
      `envelope version ${JSON.stringify(fields.v)} / ${JSON.stringify(fields.alg)} is not ` +
        `${VERSION} / ${ALGORITHM}`,
    );
  }
  const kid = fields.kid;
  if (typeof kid !== "string" || !KEY_ID.test(kid)) {
    throw new EnvelopeError("the envelope's key id is not one");
  }
  const kek = keys.key(kid);
  const nonce = b64decode(fields.nonce, "the envelope's nonce");
  if (nonce.length !== NONCE_BYTES) {
    throw new EnvelopeError(`the envelope's nonce is ${nonce.length} bytes, not ${NONCE_BYTES}`);
  }
  const wrapped = b64decode(fields.wrapped_key, "the wrapped key");
  const ciphertext = b64decode(fields.ciphertext, "the ciphertext");
  let dataKey: CryptoKey;
  try {
    dataKey = await crypto.subtle.unwrapKey(
      "raw",
      wrapped,
      await wrappingKey(kek),
      "AES-KW",
      "AES-GCM",
      false,
      ["decrypt"],
    );
  } catch {
    throw new EnvelopeError(
      `the envelope's data key does not unwrap under key ${kid}: it was changed`,
    );
  }
  if ((dataKey.algorithm as AesKeyAlgorithm).length !== KEY_BYTES * 8) {
    throw new EnvelopeError(
      `the envelope's data key does not unwrap under key ${kid}: it was changed`,
    );
  }
  try {
    const plaintext = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonce, additionalData: associatedData(place), tagLength: 128 },
      dataKey,
      ciphertext,
    );
    return new TextDecoder("utf-8", { fatal: true }).decode(plaintext);
  } catch {
    throw new EnvelopeError(
      `the envelope does not decrypt for ${place.table}.${place.column} of row ${place.rowId}: ` +
        "it was changed, or it belongs to another row or column",
    );
  }
}
