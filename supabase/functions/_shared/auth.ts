/**
 * The caller's identity, from the `Authorization: Bearer` JWT, verified here as PostgREST
 * verifies it: the signature against the project's JWKS (`SUPABASE_JWKS`, a JWKS JSON
 * document, or `SUPABASE_JWKS_URL`) or its HS256 secret (`SUPABASE_JWT_SECRET`), the
 * expiry, and for users the audience `authenticated`.
 */
import * as jose from "jose";
import { optional } from "./env.ts";
import { HttpError } from "./http.ts";

export type Claims = jose.JWTPayload & { role?: string; aal?: string };

/** A verified caller: the claims as the database will see them, and the user's id. */
export interface Caller {
  claims: Claims;
  role: string;
  userId: string | null;
}

type Key = Uint8Array | jose.JWTVerifyGetKey;

let cachedKey: { source: string; key: Key } | undefined;

/** The key (or key set) JWTs are verified against, from the environment. */
function verificationKey(): Key {
  const jwks = optional("SUPABASE_JWKS");
  const jwksUrl = optional("SUPABASE_JWKS_URL");
  const secret = optional("SUPABASE_JWT_SECRET");
  const source = `${jwks ?? ""}\u0000${jwksUrl ?? ""}\u0000${secret ?? ""}`;
  if (cachedKey?.source === source) return cachedKey.key;
  let key: Key;
  if (jwks) {
    key = jose.createLocalJWKSet(JSON.parse(jwks) as jose.JSONWebKeySet);
  } else if (jwksUrl) {
    key = jose.createRemoteJWKSet(new URL(jwksUrl));
  } else if (secret) {
    key = new TextEncoder().encode(secret);
  } else {
    throw new Error("Set SUPABASE_JWKS, SUPABASE_JWKS_URL or SUPABASE_JWT_SECRET");
  }
  cachedKey = { source, key };
  return key;
}

function unauthorized(code: string, message: string): HttpError {
  return new HttpError(401, code, message, {}, {
    "www-authenticate": `Bearer error="invalid_token", error_description="${message}"`,
  });
}

/** The bearer token of the request, or 401. */
function bearerToken(req: Request): string {
  const header = req.headers.get("authorization");
  if (!header) {
    throw unauthorized("PGRST302", "Authorization: Bearer token required");
  }
  const match = /^Bearer\s+([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)$/i.exec(
    header.trim(),
  );
  if (!match) throw unauthorized("PGRST301", "The Authorization header is not a Bearer JWT");
  return match[1];
}

/** Verify the token's signature and expiry; `audience` when given must be in `aud`. */
async function verify(token: string, audience?: string): Promise<Claims> {
  const key = verificationKey();
  const options: jose.JWTVerifyOptions = {
    algorithms: key instanceof Uint8Array ? ["HS256"] : ["RS256", "ES256", "EdDSA"],
    audience,
    requiredClaims: ["exp"],
  };
  try {
    const { payload } = key instanceof Uint8Array
      ? await jose.jwtVerify(token, key, options)
      : await jose.jwtVerify(token, key, options);
    return payload as Claims;
  } catch (error) {
    if (error instanceof jose.errors.JWTExpired) {
      throw unauthorized("PGRST303", "JWT expired");
    }
    if (error instanceof jose.errors.JWTClaimValidationFailed && error.claim === "aud") {
      throw unauthorized("PGRST303", "JWT audience is not 'authenticated'");
    }
    if (error instanceof jose.errors.JOSEError) {
      throw unauthorized("PGRST301", "JWT could not be verified");
    }
    throw error;
  }
}

/** The signed-in user who calls: aud `authenticated`, role `authenticated`, a `sub`. */
export async function requireUser(req: Request): Promise<Caller> {
  const claims = await verify(bearerToken(req), "authenticated");
  if (claims.role !== "authenticated" || typeof claims.sub !== "string" || claims.sub === "") {
    throw new HttpError(403, "42501", "This function acts only for a signed-in user");
  }
  return { claims, role: "authenticated", userId: claims.sub };
}

/** The project's service (its service-role key): role `service_role`. */
export async function requireService(req: Request): Promise<Caller> {
  const claims = await verify(bearerToken(req));
  if (claims.role !== "service_role") {
    throw new HttpError(403, "42501", "This function is called only with the service role key");
  }
  return { claims, role: "service_role", userId: null };
}
