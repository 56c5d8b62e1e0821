/** The few assertions the tests need, on node:assert (no registry other than npm). */
import assert from "node:assert/strict";

export function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

export function assert_(value: unknown, message?: string): asserts value {
  assert.ok(value, message);
}

export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  assert.match(actual, pattern, message);
}

/** Await `fn`'s rejection, check its class, and return the error. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  klass: new (...args: never[]) => E,
): Promise<E> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof klass, `expected ${klass.name}, got ${String(error)}`);
    return error as E;
  }
  throw new assert.AssertionError({ message: `expected ${klass.name} to be thrown` });
}
