/**
 * A stand-in for the two Stripe Connect endpoints the payouts function calls, POST
 * /v1/transfers and POST /v1/payouts (with Stripe-Account), for the payouts tests only: the
 * local Stripe these tests run has no Connect. It keeps every request, replays the first
 * answer for a repeated Idempotency-Key as Stripe does, and can be told to fail either call.
 * Nothing else of Stripe is imitated here.
 */

export interface Seen {
  path: string;
  idempotencyKey: string | null;
  account: string | null;
  form: Record<string, string>;
}

export interface FakeConnect {
  base: string;
  seen: Seen[];
  fail: { transfers: boolean; payouts: boolean };
  close: () => Promise<void>;
}

export function fakeConnect(): FakeConnect {
  const seen: Seen[] = [];
  const answers = new Map<string, Record<string, unknown>>();
  const fail = { transfers: false, payouts: false };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const form = Object.fromEntries(new URLSearchParams(await req.text()));
    const entry: Seen = {
      path,
      idempotencyKey: req.headers.get("idempotency-key"),
      account: req.headers.get("stripe-account"),
      form,
    };
    seen.push(entry);
    const kind = path === "/v1/transfers" ? "transfers" : path === "/v1/payouts" ? "payouts" : null;
    if (req.method !== "POST" || kind === null) {
      return Response.json({ error: { type: "invalid_request_error", message: "not faked" } }, {
        status: 404,
      });
    }
    if (fail[kind]) {
      return Response.json({ error: { type: "api_error", message: "Stripe is having trouble" } }, {
        status: 500,
      });
    }
    const key = `${entry.account ?? ""}|${entry.idempotencyKey ?? crypto.randomUUID()}`;
    let answer = answers.get(key);
    if (!answer) {
      const id = (kind === "transfers" ? "tr_" : "po_") +
        crypto.randomUUID().replaceAll("-", "").slice(0, 20);
      answer = {
        id,
        object: kind === "transfers" ? "transfer" : "payout",
        amount: Number(form.amount),
        currency: form.currency,
        destination: form.destination,
        status: kind === "payouts" ? "pending" : undefined,
        metadata: { withdrawal_id: form["metadata[withdrawal_id]"] },
      };
      answers.set(key, answer);
    }
    return Response.json(answer);
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    seen,
    fail,
    close: () => server.shutdown(),
  };
}
