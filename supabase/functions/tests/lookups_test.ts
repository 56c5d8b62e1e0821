// The stripe-webhook function hands the database events with no processor token: each one
// replaced by its lookup, wherever it stands; an event that names none is passed on as sent.
import { assert_, assertEquals } from "./assert.ts";
import { tokensIn, withLookups } from "../stripe-webhook/lookups.ts";

/** A stand-in lookup that shows which token it stands for. */
const marked = (token: string) => Promise.resolve(`k:${token.length}${token.slice(-3)}`);

Deno.test("each token becomes its lookup: a value, a word of a text, a key", async () => {
  const event = {
    id: "evt_1AbcDEF234",
    account: "acct_1CarlStd01",
    data: {
      object: {
        id: "po_1Payout0001",
        destination: "ba_1CarlBank01",
        failure_message: "No such external account: 'ba_1CarlBank01' on acct_1CarlStd01.",
        metadata: { "card_1KeyName01": "x" },
        payment_method: "pm_1HanaCard01",
        customer: "cus_HanaCust01",
        payment_method_types: ["card_present", "card"],
      },
    },
  };
  const passed = JSON.parse(await withLookups(JSON.stringify(event), marked));
  const acct = await marked("acct_1CarlStd01");
  const bank = await marked("ba_1CarlBank01");
  assertEquals(passed.account, acct);
  assertEquals(passed.data.object.destination, bank);
  assertEquals(
    passed.data.object.failure_message,
    `No such external account: '${bank}' on ${acct}.`,
  );
  assertEquals(Object.keys(passed.data.object.metadata), [await marked("card_1KeyName01")]);
  assertEquals([passed.data.object.payment_method, passed.data.object.customer], [
    await marked("pm_1HanaCard01"),
    await marked("cus_HanaCust01"),
  ]);
  assertEquals(
    [passed.id, passed.data.object.id, passed.data.object.payment_method_types],
    ["evt_1AbcDEF234", "po_1Payout0001", ["card_present", "card"]],
    "references that are not credentials, and words that are not ids, stay",
  );
  assertEquals(tokensIn(passed).size, 0, "no token is left");
});

Deno.test("an event that names no token is passed on exactly as Stripe sent it", async () => {
  const raw = '{"id": "evt_1AbcDEF234", "data": {"object": {"id": "ch_1X", "amount": 1.50}}}';
  assertEquals(await withLookups(raw, marked), raw);
});

Deno.test("a token escaped in the JSON text is found once decoded", async () => {
  const raw = '{"id": "evt_1AbcDEF234", "account": "\\u0061cct_1CarlStd01"}';
  const passed = JSON.parse(await withLookups(raw, marked));
  assert_(!JSON.stringify(passed).includes("cct_1CarlStd01"), JSON.stringify(passed));
});

Deno.test("a token after an escape or glued to an underscore is found; the rest of a word stays", async () => {
  const raw = JSON.stringify({
    id: "evt_1AbcDEF234",
    data: {
      object: {
        failure_message: "closed:\nacct_1CarlStd01 and x_ba_1CarlBank01_old",
        payment_method_types: ["card_present"],
      },
    },
  });
  const passed = JSON.parse(await withLookups(raw, marked));
  assertEquals(
    passed.data.object.failure_message,
    `closed:\n${await marked("acct_1CarlStd01")} and x_${await marked("ba_1CarlBank01")}_old`,
  );
  assertEquals(passed.data.object.payment_method_types, ["card_present"]);
  assertEquals(tokensIn(passed).size, 0);
});
