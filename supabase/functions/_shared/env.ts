/** The environment Supabase's edge runtime gives a function, read once per use. */

/** The value of `name`, or an error naming it when it is missing or empty. */
export function required(name: string): string {
  const value = Deno.env.get(name);
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set; the function cannot run without it`);
  }
  return value;
}

/** The value of `name`, or undefined when it is missing or empty. */
export function optional(name: string): string | undefined {
  const value = Deno.env.get(name);
  return value === undefined || value === "" ? undefined : value;
}
