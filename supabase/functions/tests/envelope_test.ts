// Envelopes and blind-index lookups of processor tokens in Deno: the vectors python/payguard/envelope.py passes too
// (tests/py/test_envelope.py), fresh keys and nonces, and every way an envelope or a key set
// can be wrong, each a clear error that shows no key and no token.
import { assert_, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import {
  b64decode,
  decrypt,
  encrypt,
  type Envelope,
  EnvelopeError,
  KeySet,
  type Place,
  seal,
} from "../_shared/envelope.ts";
import { INDEX_KEYS_VARIABLE, lookup, lookups } from "../_shared/token_index.ts";

interface Case {
  name: string;
  table: string;
  column: string;
  row_id: string;
  envelope: Envelope;
}
interface Vector extends Case {
  plaintext: string;
  data_key: string;
  nonce: string;
  kid: string;
}

interface Refusal {
  error: string;
}
const VECTORS: {
  keys: string;
  vectors: Vector[];
  failures: Case[];
  key_set_errors: (Refusal & { text: string })[];
  envelope_errors:
    (Refusal & { name: string; change?: Record<string, unknown>; remove?: string })[];
  token_errors: (Refusal & { token: string })[];
} = JSON.parse(
  await Deno.readTextFile(
    new URL("../../../tests/data/token-envelope-vectors.json", import.meta.url),
  ),
);
const KEYS = KeySet.parse(VECTORS.keys);
const INDEX: { index_keys: string; lookups: { token: string; kid: string; lookup: string }[] } =
  VECTORS as never;
const INDEX_KEYS = KeySet.parse(INDEX.index_keys, INDEX_KEYS_VARIABLE);

function place(c: Case): Place {
  return { table: c.table, column: c.column, rowId: c.row_id };
}

for (const vector of VECTORS.vectors) {
  Deno.test(`vector: ${vector.name}, reproduced from its data key and nonce, and read back`, async () => {
    const made = await seal(KEYS.withCurrent(vector.kid), vector.plaintext, place(vector), {
      dataKey: b64decode(vector.data_key, "data key"),
      nonce: b64decode(vector.nonce, "nonce"),
    });
    assertEquals(made, vector.envelope);
    // the current key set reads an envelope made under an older key
    assertEquals(await decrypt(KEYS, vector.envelope, place(vector)), vector.plaintext);
  });
}

for (const failure of VECTORS.failures) {
  Deno.test(`refused: ${failure.name}, showing no key and no token`, async () => {
    const error = await assertRejects(
      () => decrypt(KEYS, failure.envelope, place(failure)),
      EnvelopeError,
    );
    const expected = failure.envelope.kid === "k2024z" ? "no key 'k2024z'" : "it was changed";
    assert_(error.message.includes(expected), error.message);
    assert_(!error.message.includes("pm_"), error.message);
    for (const entry of VECTORS.keys.split(",")) {
      assert_(!error.message.includes(entry.split(":")[1]), "a key in the message");
    }
  });
}

Deno.test("every value gets a fresh data key and nonce, under the first key of the set", async () => {
  const where = { table: "payment_methods", column: "token", rowId: "r1" };
  const first = await encrypt(KEYS, "pm_1Same", where);
  const second = await encrypt(KEYS, "pm_1Same", where);
  assert_(first.nonce !== second.nonce);
  assert_(first.wrapped_key !== second.wrapped_key);
  assert_(first.ciphertext !== second.ciphertext);
  assertEquals(first.kid, "k2026a");
  for (const envelope of [first, second]) {
    assertEquals(await decrypt(KEYS, envelope, where), "pm_1Same");
  }
});

for (const refusal of VECTORS.key_set_errors) {
  Deno.test(`a key set refused: ${JSON.stringify(refusal.text).slice(0, 40)}`, () => {
    try {
      KeySet.parse(refusal.text);
      throw new Error("it was taken");
    } catch (error) {
      assert_(error instanceof EnvelopeError, String(error));
      assert_(error.message.includes(refusal.error), error.message);
    }
  });
}

Deno.test("keys come from the environment", () => {
  try {
    KeySet.fromEnv(() => undefined);
    throw new Error("no keys were taken");
  } catch (error) {
    assert_(error instanceof EnvelopeError, String(error));
    assertMatch(error.message, /PAYGUARD_TOKEN_KEYS is not set/);
  }
  assertEquals(KeySet.fromEnv(() => VECTORS.keys.replace(",", "\n")).ids(), ["k2026a", "k2025b"]);
});

for (const refusal of VECTORS.envelope_errors) {
  Deno.test(`an envelope refused: ${refusal.name}`, async () => {
    const vector = VECTORS.vectors[0];
    const envelope: Record<string, unknown> = { ...vector.envelope, ...(refusal.change ?? {}) };
    if (refusal.remove) delete envelope[refusal.remove];
    const error = await assertRejects(() => decrypt(KEYS, envelope, place(vector)), EnvelopeError);
    assert_(error.message.includes(refusal.error), error.message);
  });
}

for (const refusal of VECTORS.token_errors) {
  Deno.test(`a token refused by encrypt and lookup: ${refusal.error}`, async () => {
    const where = { table: "payment_methods", column: "token", rowId: "r1" };
    for (
      const call of [
        () => encrypt(KEYS, refusal.token, where),
        () => lookup(INDEX_KEYS, refusal.token),
      ]
    ) {
      const error = await assertRejects(call, EnvelopeError);
      assert_(error.message.includes(refusal.error), error.message);
    }
  });
}

// -- the blind index ------------------------------------------------------------------------

Deno.test("each lookup of the vectors is reproduced, under the key it names", async () => {
  for (const vector of INDEX.lookups) {
    assertEquals(await lookup(INDEX_KEYS, vector.token, vector.kid), vector.lookup);
  }
});

Deno.test("a token's lookups: under every index key, the current first; none under another key set", async () => {
  const token = INDEX.lookups[0].token;
  const all = await lookups(INDEX_KEYS, token);
  assertEquals(all.map((value) => value.split(":")[0]), ["i2026a", "i2025b"]);
  assertEquals(all[0], await lookup(INDEX_KEYS, token));
  assert_(all[0] !== (await lookup(INDEX_KEYS, token + "x")));
  // the envelopes' keys are not the index keys
  await assertRejects(() => lookup(KEYS, token, "i2026a"), EnvelopeError);
  try {
    KeySet.fromEnv(() => undefined, INDEX_KEYS_VARIABLE);
    throw new Error("no index keys were taken");
  } catch (error) {
    assert_(error instanceof EnvelopeError, String(error));
    assertMatch(error.message, /PAYGUARD_TOKEN_INDEX_KEYS is not set/);
  }
});
