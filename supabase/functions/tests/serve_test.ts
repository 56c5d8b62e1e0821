// Each function is served unchanged by `deno serve` (its default export), answers JSON, and
// the user-facing ones answer browsers' CORS preflights.
import { assertEquals } from "./assert.ts";
import { test } from "./helpers.ts";

const FUNCTIONS = ["payment-methods", "milestone-payments", "stripe-webhook", "payouts"];

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function answer(url: string, init: RequestInit): Promise<Response> {
  const deadline = Date.now() + 30000;
  while (true) {
    try {
      return await fetch(url, init);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

test("deno serve serves each function: a request without credentials is refused as JSON", async () => {
  for (const name of FUNCTIONS) {
    const port = freePort();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "serve",
        "--quiet",
        "--frozen",
        "--allow-all",
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        `${name}/index.ts`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const res = await answer(`http://127.0.0.1:${port}/functions/v1/${name}`, {
        method: "POST",
        body: "{}",
      });
      const body = await res.json();
      assertEquals(res.headers.get("content-type"), "application/json; charset=utf-8", name);
      assertEquals(res.status, 400 + (name === "stripe-webhook" ? 0 : 1), name);
      assertEquals(typeof body.code, "string", name);
    } finally {
      child.kill("SIGTERM");
      await child.status;
    }
  }
});

test("the user-facing functions answer CORS preflights and add CORS headers", async () => {
  for (const name of ["payment-methods", "milestone-payments"]) {
    const mod = await import(`../${name}/index.ts`);
    const preflight = await mod.default.fetch(
      new Request(`http://127.0.0.1/functions/v1/${name}`, { method: "OPTIONS" }),
    );
    assertEquals(preflight.status, 204, name);
    assertEquals(preflight.headers.get("access-control-allow-origin"), "*", name);
    const refused = await mod.default.fetch(
      new Request(`http://127.0.0.1/functions/v1/${name}`, { method: "POST", body: "{}" }),
    );
    assertEquals(refused.status, 401, name);
    assertEquals(refused.headers.get("access-control-allow-origin"), "*", name);
    await refused.body?.cancel();
  }
});
