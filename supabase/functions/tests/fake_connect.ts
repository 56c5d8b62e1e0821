/**
 * A stand-in for the two Stripe Connect endpoints the payouts function calls, POST
 * /v1/transfers and POST /v1/payouts (with Stripe-Account), for the payouts tests only, when
 * the local Stripe of the run has no Connect. It keeps every request, replays the first answer
 * to an Idempotency-Key (a failure too) as Stripe does, and can be told to fail either call.
 * Nothing else of Stripe is imitated here.
 */

import { stripeId } from "./helpers.ts";

export interface Seen {
  path: string;
  answer?: string;
  idempotencyKey: string | null;
  account: string | null;
  form: Record<string, string>;
}

export interface Answer {
  id: string;
  amount: number;
  currency: string;
  destination?: string;
}

export interface FakeConnect {
  base: string;
  seen: Seen[];
  /** The distinct objects made on `path`, in order. */
  answers: (path: string) => Answer[];
  fail: { transfers: boolean; payouts: boolean };
  close: () => Promise<void>;
}

export function fakeConnect(): FakeConnect {
  const seen: Seen[] = [];
  const answers = new Map<string, Answer & { path: string }>();
  const failures = new Map<string, Record<string, unknown>>();
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
    const key = `${entry.account ?? ""}|${entry.idempotencyKey ?? crypto.randomUUID()}`;
    // Stripe keeps the first answer to a key, a failure too, and replays it for 24 hours.
    const failure = failures.get(key);
    if (failure) return Response.json(failure, { status: 500 });
    if (fail[kind]) {
      const body = { error: { type: "api_error", message: "Stripe is having trouble" } };
      if (entry.idempotencyKey) failures.set(key, body);
      return Response.json(body, { status: 500 });
    }
    let answer = answers.get(key);
    if (!answer) {
      const id = stripeId(kind === "transfers" ? "tr" : "po", 20);
      answer = {
        path,
        id,
        amount: Number(form.amount),
        currency: form.currency,
        destination: form.destination,
      };
      answers.set(key, answer);
    }
    entry.answer = answer.id;
    return Response.json({
      id: answer.id,
      object: kind === "transfers" ? "transfer" : "payout",
      amount: answer.amount,
      currency: answer.currency,
      destination: answer.destination,
      status: kind === "payouts" ? "pending" : undefined,
      metadata: { withdrawal_id: form["metadata[withdrawal_id]"] },
    });
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    seen,
    answers: (path) =>
      [...answers.values()].filter((a) => a.path === path).map(({ path: _, ...a }) => a),
    fail,
    close: () => server.shutdown(),
  };
}
