// Caller identity: the JWT verified as PostgREST verifies it, and refused with a JSON 401.
import { assertEquals, assertMatch, assertRejects } from "./assert.ts";
import * as jose from "jose";
import { requireService, requireUser } from "../_shared/auth.ts";
import { errorResponse } from "../_shared/errors.ts";
import { HttpError } from "../_shared/http.ts";
import { sign, test, userClaims } from "./helpers.ts";

const USER = "6f1c1f0e-3a4b-4c2d-9e8f-0a1b2c3d4e5f";

function request(authorization?: string): Request {
  const headers = new Headers();
  if (authorization !== undefined) headers.set("authorization", authorization);
  return new Request("http://127.0.0.1/functions/v1/x", { method: "POST", headers });
}

async function refusal(
  promise: Promise<unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const error = await assertRejects(() => promise, HttpError);
  const res = errorResponse(error);
  assertEquals(res.headers.get("content-type"), "application/json; charset=utf-8");
  return { status: res.status, body: await res.json() };
}

test("a valid user token gives the caller's claims and id", async () => {
  const caller = await requireUser(request(`Bearer ${await sign(userClaims(USER))}`));
  assertEquals(caller.userId, USER);
  assertEquals(caller.role, "authenticated");
  assertEquals(caller.claims.aal, "aal2");
});

test("no Authorization header is a 401 with a JSON body", async () => {
  const { status, body } = await refusal(requireUser(request()));
  assertEquals(status, 401);
  assertEquals(body.code, "PGRST302");
  assertMatch(String(body.message), /Bearer token required/);
});

test("a header that is not a Bearer JWT is a 401", async () => {
  for (const header of ["Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer "]) {
    const { status, body } = await refusal(requireUser(request(header)));
    assertEquals(status, 401, header);
    assertEquals(body.code, "PGRST301", header);
  }
});

test("an expired token is a 401 that says it expired", async () => {
  const token = await sign(userClaims(USER), { expiresIn: -10 });
  const { status, body } = await refusal(requireUser(request(`Bearer ${token}`)));
  assertEquals(status, 401);
  assertEquals(body, { code: "PGRST303", message: "JWT expired" });
});

test("a token signed with another secret is a 401", async () => {
  const other = new TextEncoder().encode("another-secret-another-secret-another-secret!");
  const token = await sign(userClaims(USER), { secret: other });
  const { status, body } = await refusal(requireUser(request(`Bearer ${token}`)));
  assertEquals(status, 401);
  assertEquals(body.message, "JWT could not be verified");
});

test("a token with its payload altered is a 401", async () => {
  const [head, , signature] = (await sign(userClaims(USER, "aal1"))).split(".");
  const forged = btoa(JSON.stringify({ ...userClaims(USER, "aal2"), exp: 9999999999 }))
    .replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_");
  const { status } = await refusal(requireUser(request(`Bearer ${head}.${forged}.${signature}`)));
  assertEquals(status, 401);
});

test("an unsigned token (alg none) is a 401", async () => {
  const token = new jose.UnsecuredJWT({ ...userClaims(USER), exp: 9999999999 }).encode();
  const { status } = await refusal(requireUser(request(`Bearer ${token}`)));
  assertEquals(status, 401);
});

test("a token without exp is a 401", async () => {
  const token = await new jose.SignJWT({ ...userClaims(USER) })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(Deno.env.get("SUPABASE_JWT_SECRET")!));
  const { status } = await refusal(requireUser(request(`Bearer ${token}`)));
  assertEquals(status, 401);
});

test("a token for another audience is a 401 that names the audience", async () => {
  const token = await sign({ ...userClaims(USER), aud: "somebody-else" });
  const { status, body } = await refusal(requireUser(request(`Bearer ${token}`)));
  assertEquals(status, 401);
  assertMatch(String(body.message), /audience/);
});

test("the service role's token is not a user, and a user's token is not the service", async () => {
  const service = await sign({ role: "service_role" });
  const asUser = await refusal(requireUser(request(`Bearer ${service}`)));
  assertEquals(asUser.status, 401, "the service key has no audience 'authenticated'");
  const asService = await refusal(
    requireService(request(`Bearer ${await sign(userClaims(USER))}`)),
  );
  assertEquals(asService.status, 403);
  const caller = await requireService(request(`Bearer ${service}`));
  assertEquals(caller.role, "service_role");
});

test("a user token whose role is not authenticated is refused", async () => {
  const token = await sign({ ...userClaims(USER), role: "payment_service" });
  const { status } = await refusal(requireUser(request(`Bearer ${token}`)));
  assertEquals(status, 403);
});

test("tokens verify against SUPABASE_JWKS (asymmetric keys) when it is set", async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  const now = Math.floor(Date.now() / 1000);
  const token = await new jose.SignJWT({ ...userClaims(USER), exp: now + 60 })
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .sign(privateKey);
  Deno.env.set("SUPABASE_JWKS", JSON.stringify({ keys: [jwk] }));
  try {
    const caller = await requireUser(request(`Bearer ${token}`));
    assertEquals(caller.userId, USER);
    const hs = await sign(userClaims(USER));
    const { status } = await refusal(requireUser(request(`Bearer ${hs}`)));
    assertEquals(status, 401, "with a JWKS, an HS256 token is not accepted");
  } finally {
    Deno.env.delete("SUPABASE_JWKS");
  }
});
