/**
 * JSON answers and the errors that become them. Every answer a function gives is JSON, errors
 * included: {code, message, details?, hint?, ...}, as PostgREST answers.
 */

export type Body = Record<string, unknown>;

/** An answer with a JSON body. */
export function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** An error that the handler turns into an answer with this status and body. */
export class HttpError extends Error {
  readonly status: number;
  readonly body: Body;
  readonly headers: HeadersInit;

  constructor(status: number, code: string, message: string, extra: Body = {}, headers = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.body = { code, message, ...extra };
    this.headers = headers;
  }
}

/** The request's JSON object body (`{}` for an empty body when `emptyIsEmpty`), or 400. */
export async function readJsonObject(req: Request, emptyIsEmpty = false): Promise<Body> {
  let value: unknown;
  try {
    const text = await req.text();
    value = emptyIsEmpty && text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    throw new HttpError(400, "invalid_json", "The request body must be a JSON object");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(400, "invalid_json", "The request body must be a JSON object");
  }
  return value as Body;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `body[name]` as a UUID, or 400 naming the field. */
export function uuidField(body: Body, name: string): string {
  const value = body[name];
  if (typeof value !== "string" || !UUID.test(value)) {
    throw new HttpError(422, "invalid_field", `${name} must be a UUID`, { field: name });
  }
  return value.toLowerCase();
}

/** `body[name]` as a string matching `pattern`, or 422 naming the field. */
export function stringField(
  body: Body,
  name: string,
  pattern: RegExp,
  what: string,
): string {
  const value = body[name];
  if (typeof value !== "string" || !pattern.test(value)) {
    throw new HttpError(422, "invalid_field", `${name} must be ${what}`, { field: name });
  }
  return value;
}

/** 405 unless the request's method is one of `methods`. */
export function allowMethods(req: Request, ...methods: string[]): void {
  if (!methods.includes(req.method)) {
    throw new HttpError(405, "method_not_allowed", `Use ${methods.join(" or ")}`, {}, {
      allow: methods.join(", "),
    });
  }
}
