/**
 * The Stripe client: the secret key from `STRIPE_SECRET_KEY`, Deno's fetch and SubtleCrypto,
 * and `STRIPE_API_BASE` (e.g. http://127.0.0.1:12111) to point it at a local Stripe.
 */
import Stripe from "stripe";
import { optional, required } from "./env.ts";

export { Stripe };

let cached: { source: string; client: Stripe } | undefined;

/** The shared Stripe client for the present environment. */
export function stripe(): Stripe {
  const key = required("STRIPE_SECRET_KEY");
  const base = optional("STRIPE_API_BASE");
  const source = `${key}\u0000${base ?? ""}`;
  if (cached?.source === source) return cached.client;
  const config: Stripe.StripeConfig = {
    httpClient: Stripe.createFetchHttpClient(),
    maxNetworkRetries: 0,
    timeout: Number(optional("STRIPE_TIMEOUT_MS") ?? "20000"),
    appInfo: { name: "payguard" },
  };
  if (base) {
    const url = new URL(base);
    config.host = url.hostname;
    config.protocol = url.protocol === "http:" ? "http" : "https";
    config.port = Number(url.port || (url.protocol === "http:" ? 80 : 443));
  }
  cached = { source, client: new Stripe(key, config) };
  return cached.client;
}

/** Verifies webhook signatures with Deno's SubtleCrypto. */
export const cryptoProvider = Stripe.createSubtleCryptoProvider();

/** True for an error Stripe answered (as opposed to one reaching it). */
export function isStripeError(error: unknown): error is Stripe.errors.StripeError {
  return error instanceof Stripe.errors.StripeError;
}

/** True when Stripe could not be reached or answered with a server error: retry later. */
export function stripeUnavailable(error: unknown): boolean {
  if (!isStripeError(error)) return false;
  return error instanceof Stripe.errors.StripeConnectionError ||
    error instanceof Stripe.errors.StripeAPIError ||
    (error.statusCode !== undefined && error.statusCode >= 500);
}
