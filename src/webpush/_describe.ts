// How Web Push error messages show the value at fault, in their ", got `<value>`" tail.

/** Longest text shown in a message; a longer one is cut, so a bad input cannot flood a log. */
const SHOWN_LIMIT = 100;

/** The type of `value` as a message names it: `null` and `array` apart from `object`. */
export function typeOf(value: unknown): string {
  if (value === null) return "null";
  return Array.isArray(value) ? "array" : typeof value;
}

/** `text` as a message shows it: cut after {@linkcode SHOWN_LIMIT} characters. */
export function shown(text: string): string {
  return text.length > SHOWN_LIMIT ? `${text.slice(0, SHOWN_LIMIT)}…` : text;
}
