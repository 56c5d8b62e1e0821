/**
 * The cost of sealing a processor token in the Edge Functions' runtime, for `payguard bench
 * --only tokens`: encrypt, decrypt and lookup per second over N tokens (the first argument,
 * 2,000 by default), and the baseline, bare AES-256-GCM of the same tokens under one imported
 * key, each the best of three rounds. Prints one JSON object.
 */
import { b64encode, decrypt, encrypt, type Envelope, KeySet } from "../_shared/envelope.ts";
import { lookup } from "../_shared/token_index.ts";

const count = Number(Deno.args[0] ?? "2000");

function randomKey(kid: string): string {
  return `${kid}:${b64encode(crypto.getRandomValues(new Uint8Array(32)))}`;
}

async function best(work: () => Promise<void>, rounds = 3): Promise<number> {
  let fastest = Infinity;
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    await work();
    fastest = Math.min(fastest, (performance.now() - started) / 1000);
  }
  return count / fastest;
}

const keys = KeySet.parse(randomKey("k-bench"));
const index = KeySet.parse(randomKey("i-bench"));
const tokens = Array.from({ length: count }, (_, n) => `pm_Bench${String(n).padStart(16, "0")}`);
const places = tokens.map((_, n) => ({
  table: "payment_methods",
  column: "processor_payment_method_id",
  rowId: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
}));
const sealed: Envelope[] = [];
for (let n = 0; n < count; n++) sealed.push(await encrypt(keys, tokens[n], places[n]));
const bare = await crypto.subtle.importKey(
  "raw",
  crypto.getRandomValues(new Uint8Array(32)),
  "AES-GCM",
  false,
  ["encrypt"],
);
const nonce = crypto.getRandomValues(new Uint8Array(12));
const encoder = new TextEncoder();

console.log(JSON.stringify({
  encrypt_per_s: await best(async () => {
    for (let n = 0; n < count; n++) await encrypt(keys, tokens[n], places[n]);
  }),
  decrypt_per_s: await best(async () => {
    for (let n = 0; n < count; n++) await decrypt(keys, sealed[n], places[n]);
  }),
  lookup_per_s: await best(async () => {
    for (const token of tokens) await lookup(index, token);
  }),
  bare_gcm_per_s: await best(async () => {
    for (let n = 0; n < count; n++) {
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: nonce, additionalData: encoder.encode(places[n].rowId) },
        bare,
        encoder.encode(tokens[n]),
      );
    }
  }),
}));
