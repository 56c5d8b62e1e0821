/**
 * How a function is served. Each index.ts exports `{ fetch }` as its default, which `deno serve`
 * serves; Supabase's edge runtime serves what `Deno.serve` is given, so there (and only there,
 * where the `EdgeRuntime` global exists) the same handler is passed to Deno.serve.
 */
import { handler } from "./errors.ts";

export interface Served {
  fetch: (req: Request) => Promise<Response>;
}

/** Browsers call the user-facing functions across origins with a bearer token (no cookies). */
const CORS = {
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "authorization, x-client-info, apikey, content-type",
  "access-control-allow-methods": "POST, OPTIONS",
};

/** The function's handler, its errors answered as JSON; with `cors`, preflights answered. */
export function serve(
  handle: (req: Request) => Promise<Response>,
  options: { cors?: boolean } = {},
): Served {
  const inner = handler(handle);
  const fetch = options.cors
    ? async (req: Request) => {
      if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
      const res = await inner(req);
      const headers = new Headers(res.headers);
      for (const [name, value] of Object.entries(CORS)) headers.set(name, value);
      return new Response(res.body, { status: res.status, headers });
    }
    : inner;
  const served = { fetch };
  if ("EdgeRuntime" in globalThis) Deno.serve(served.fetch);
  return served;
}
