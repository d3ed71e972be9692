/**
 * Small validating decoders for JSON that arrives from another process (the control socket):
 * each checks a parsed value's shape and returns a typed copy holding only the fields it knows,
 * or throws a DecodeError naming the path of the first thing wrong. The TypeScript type of a
 * message is derived from its decoder, so the shape is written once.
 */

export class DecodeError extends Error {}

/** Checks `value` (found at `at`, e.g. `reply.generations[0]`) and returns it typed. */
export type Decoder<T> = (value: unknown, at: string) => T;

/** A decoder whose field may be absent (JSON drops `undefined`). */
export interface OptionalDecoder<T> extends Decoder<T | undefined> {
  readonly optional: true;
}

export type Decoded<D> = D extends Decoder<infer T> ? T : never;

export type Shape = Readonly<Record<string, Decoder<unknown>>>;
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends OptionalDecoder<unknown> ? K : never }[keyof S];
type Flatten<T> = { [K in keyof T]: T[K] };
export type DecodedObject<S extends Shape> = Flatten<
  { readonly [K in Exclude<keyof S, OptionalKeys<S>>]: Decoded<S[K]> } & { readonly [K in OptionalKeys<S>]?: Exclude<Decoded<S[K]>, undefined> }
>;

function fail(at: string, expected: string, value: unknown): never {
  throw new DecodeError(`${at}: expected ${expected}, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export const number: Decoder<number> = (v, at) => (typeof v === 'number' && Number.isFinite(v) ? v : fail(at, 'a number', v));
export const string: Decoder<string> = (v, at) => (typeof v === 'string' ? v : fail(at, 'a string', v));
export const boolean: Decoder<boolean> = (v, at) => (typeof v === 'boolean' ? v : fail(at, 'a boolean', v));

export function literal<L extends string | number | boolean>(expected: L): Decoder<L> {
  return (v, at) => (v === expected ? expected : fail(at, JSON.stringify(expected), v));
}

export function optional<T>(decode: Decoder<T>): OptionalDecoder<T> {
  return Object.assign((v: unknown, at: string) => (v === undefined ? undefined : decode(v, at)), { optional: true as const });
}

export function array<T>(decode: Decoder<T>): Decoder<readonly T[]> {
  return (v, at) => (Array.isArray(v) ? v.map((item, i) => decode(item, `${at}[${i}]`)) : fail(at, 'an array', v));
}

/** An object used as a map: every value decoded by `decode`. */
export function record<T>(decode: Decoder<T>): Decoder<Readonly<Record<string, T>>> {
  return (v, at) => {
    if (!isPlainObject(v)) return fail(at, 'an object', v);
    return Object.fromEntries(Object.entries(v).map(([k, item]) => [k, decode(item, `${at}.${k}`)]));
  };
}

/** An object with these fields; fields it does not name are dropped (a newer peer may add some). */
export function object<S extends Shape>(shape: S): Decoder<DecodedObject<S>> {
  return (v, at) => {
    if (!isPlainObject(v)) return fail(at, 'an object', v);
    const out: Record<string, unknown> = {};
    for (const [k, decode] of Object.entries(shape)) {
      const field = decode(v[k], `${at}.${k}`);
      if (field !== undefined) out[k] = field;
    }
    return out as DecodedObject<S>;
  };
}
