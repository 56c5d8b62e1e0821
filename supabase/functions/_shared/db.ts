/**
 * The database, reached directly through `SUPABASE_DB_URL` (npm:postgres), and used exactly
 * as PostgREST uses it: one transaction per request, in which the caller's role, JWT claims,
 * method, path and headers are set locally (`set_config(..., true)`) before any statement, so
 * that every policy, trigger, limit and audit record applies as it does to app clients. A
 * function switches to `payment_service` only for what the service does, in the same
 * transaction (the caller's claims stay set).
 *
 * A refused RPC may answer with an error status in `response.status` and its error as the
 * result, so that its record of the refusal is committed: as PostgREST does, the transaction
 * then commits and the answer is that status and body.
 */
import postgres from "postgres";
import type { Caller } from "./auth.ts";
import { required } from "./env.ts";
import { isConnectionError } from "./errors.ts";
import { type Body, HttpError } from "./http.ts";

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;

let pool: Sql | undefined;

/** The shared connection pool on SUPABASE_DB_URL. */
export function database(): Sql {
  if (!pool) {
    pool = postgres(required("SUPABASE_DB_URL"), {
      max: Number(Deno.env.get("PAYGUARD_DB_POOL_SIZE") ?? "4"),
      prepare: false,
      onnotice: () => {},
      connect_timeout: 10,
      connection: { application_name: "payguard-functions" },
    });
  }
  return pool;
}

/** Close the pool (tests, shutdown). */
export async function closeDatabase(): Promise<void> {
  const current = pool;
  pool = undefined;
  await current?.end({ timeout: 5 });
}

/** What PostgREST sets for a request: who calls, and the request's method, path, headers. */
export interface RequestContext {
  role: string;
  claims: Record<string, unknown>;
  method: string;
  path: string;
  headers: Record<string, string>;
}

/** The context of `req` for `caller`, acting in the database as `role`. */
export function requestContext(req: Request, caller: Caller, role = caller.role): RequestContext {
  const headers: Record<string, string> = {};
  req.headers.forEach((value, name) => {
    headers[name.toLowerCase()] = value;
  });
  return {
    role,
    claims: { ...caller.claims, role },
    method: req.method.toUpperCase(),
    path: new URL(req.url).pathname,
    headers,
  };
}

/** A refusal the database answered with (response.status), after its record was committed. */
export class Refused extends HttpError {
  constructor(status: number, body: Body) {
    super(
      status,
      String(body.code ?? "refused"),
      String(body.message ?? "Refused by the database"),
      {
        details: body.details ?? null,
        hint: body.hint ?? null,
      },
    );
    this.name = "Refused";
  }
}

/**
 * Run `fn` in one transaction set up as PostgREST sets up `context`'s request. A Refused
 * thrown by `rpc` commits the transaction (the refusal's record with it) and is rethrown.
 */
export async function transaction<T>(
  context: RequestContext,
  fn: (tx: Tx) => Promise<T>,
): Promise<T> {
  let lostTimer: ReturnType<typeof setTimeout> | undefined;
  let outcome: { value: T } | { refused: Refused };
  try {
    outcome = await database().begin(async (tx) => {
      try {
        await tx`
          select
            set_config('search_path', 'public, extensions', true),
            set_config('role', ${context.role}, true),
            set_config('request.jwt.claims', ${JSON.stringify(context.claims)}, true),
            set_config('request.method', ${context.method}, true),
            set_config('request.path', ${context.path}, true),
            set_config('request.headers', ${JSON.stringify(context.headers)}, true),
            set_config('request.cookies', '{}', true)
        `;
        return { value: await fn(tx) };
      } catch (error) {
        if (error instanceof Refused) return { refused: error };
        if (!isConnectionError(error)) throw error;
        // The connection broke: the server rolls the transaction back by itself. Letting
        // this callback fail would make postgres.js send ROLLBACK on the dead connection,
        // whose write throws outside any request and ends the whole process (postgres.js
        // 3.4.x, porsager/postgres#1208). So it settles neither way: begin() itself fails
        // with CONNECTION_CLOSED when the connection closes, and the timer below is then
        // cleared. Only if the connection stays open (a connection error the server did not
        // follow by closing) does it fail after CONNECTION_LOST_WAIT_MS, and ROLLBACK is sent.
        return await new Promise<never>((_, reject) => {
          lostTimer = setTimeout(() => reject(error), CONNECTION_LOST_WAIT_MS);
        });
      }
    });
  } finally {
    clearTimeout(lostTimer);
  }
  if ("refused" in outcome) throw outcome.refused;
  return outcome.value;
}

/** How long a transaction whose connection broke waits for postgres.js to close it. */
const CONNECTION_LOST_WAIT_MS = 5_000;

/** Act as `role` from here on in this transaction (the claims stay the caller's). */
export async function setRole(tx: Tx, role: string): Promise<void> {
  await tx`select set_config('role', ${role}, true)`;
}

/** An argument of an RPC: its value and its SQL type. */
export type Arg = [value: unknown, type: string];

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;
const TYPE = /^[a-z_][a-z0-9_ ()]*(\[\])?$/;

/**
 * `select public.<name>(args)`, answered as PostgREST answers it: a response.status of 400 or
 * more makes the result the error body of a Refused.
 */
export async function rpc<T = unknown>(tx: Tx, name: string, args: Arg[]): Promise<T> {
  if (!IDENTIFIER.test(name) || !args.every(([, type]) => TYPE.test(type))) {
    throw new Error(`not an RPC call: ${name}`);
  }
  // Every value goes as text and is cast by the database: a JSON document passes as the
  // very text it is (raw webhook bodies), never re-serialised by the driver.
  const placeholders = args.map(([, type], i) => `$${i + 1}::text::${type}`).join(", ");
  await tx`select set_config('response.status', '', true)`;
  const rows = await tx.unsafe(
    `select public.${name}(${placeholders}) as answer`,
    args.map(([value]) => value === null || value === undefined ? null : String(value)),
  );
  const [{ status }] = await tx`
    select nullif(current_setting('response.status', true), '')::integer as status
  `;
  if (status !== null && status >= 400) {
    await tx`select set_config('response.status', '', true)`;
    const body = rows[0]?.answer;
    throw new Refused(status, typeof body === "object" && body !== null ? body as Body : {});
  }
  return rows[0]?.answer as T;
}
