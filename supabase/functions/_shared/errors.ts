/**
 * Turning whatever a handler throws into an answer: an HttpError as it is, a database error
 * with the status PostgREST gives its SQLSTATE, anything else as a 500 that names no detail.
 */
import { type Body, HttpError, json } from "./http.ts";

/** The status PostgREST answers a database error with (its table, for the codes we meet). */
export function statusForSqlState(code: string, role = "authenticated"): number {
  if (/^PT[1-5][0-9][0-9]$/.test(code)) return Number(code.slice(2));
  if (code === "42501") return role === "anon" ? 401 : 403;
  if (code === "23503" || code === "23505") return 409;
  if (code === "25006") return 405;
  if (code === "42883" || code === "42P01") return 404;
  if (code === "P0001") return 400;
  const klass = code.slice(0, 2);
  if (klass === "08" || klass === "53" || klass === "57") return 503;
  if (klass === "54") return 413;
  if (
    ["09", "25", "2D", "38", "39", "3B", "40", "55", "58", "F0", "HV", "P0", "XX"].includes(klass)
  ) {
    return 500;
  }
  if (klass === "0L" || klass === "0P" || klass === "28") return 403;
  return 400;
}

/** A PostgreSQL error as postgres.js raises it. */
export interface PgError {
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  /** The constraint a violation names (postgres.js: constraint_name). */
  constraint_name?: string;
}

export function isPgError(error: unknown): error is PgError {
  return typeof error === "object" && error !== null && "code" in error &&
    typeof (error as { code: unknown }).code === "string" &&
    (error as { name?: string }).name === "PostgresError";
}

/** True when the database could not be reached or the connection broke. */
export function isConnectionError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  if (isPgError(error)) return code.startsWith("08") || code === "57P01" || code === "57P03";
  return [
    "ECONNREFUSED",
    "ECONNRESET",
    "CONNECTION_CLOSED",
    "CONNECTION_ENDED",
    "CONNECTION_DESTROYED",
    "CONNECT_TIMEOUT",
    "ETIMEDOUT",
    "ENOTFOUND",
    "EPIPE",
  ].includes(code);
}

/** A processor token at a word's start, as private.without_processor_ids finds one. */
const PROCESSOR_ID = /(?<![A-Za-z0-9_])(pm|cus|acct|ba|card)_[A-Za-z0-9]{6,}/g;

/**
 * `text` with each processor token replaced by its kind alone (`[acct_…]`): a database
 * message names the values it refused (a unique key's `Key (…)=(pm_…)`), and a token is
 * payment_service's alone, never the caller's.
 */
export function withoutProcessorIds<T extends string | null | undefined>(text: T): T {
  return (typeof text === "string" ? text.replace(PROCESSOR_ID, "[$1_…]") : text) as T;
}

/** PostgREST's error body for a database error, without the processor tokens it names. */
export function pgBody(error: PgError): Body {
  return {
    code: error.code,
    message: withoutProcessorIds(error.message),
    details: withoutProcessorIds(error.detail) ?? null,
    hint: withoutProcessorIds(error.hint) ?? null,
  };
}

/** The answer for anything a handler threw. */
export function errorResponse(error: unknown): Response {
  if (error instanceof HttpError) return json(error.status, error.body, error.headers);
  if (isConnectionError(error)) {
    return json(503, {
      code: "database_unavailable",
      message: "The database could not be reached; nothing was changed. Try again.",
    });
  }
  if (isPgError(error)) return json(statusForSqlState(error.code), pgBody(error));
  console.error("unexpected error", error);
  return json(500, { code: "internal_error", message: "An unexpected error occurred" });
}

/** A fetch handler that answers errors as JSON instead of throwing them. */
export function handler(
  fn: (req: Request) => Promise<Response>,
): (req: Request) => Promise<Response> {
  return async (req: Request) => {
    try {
      return await fn(req);
    } catch (error) {
      return errorResponse(error);
    }
  };
}
