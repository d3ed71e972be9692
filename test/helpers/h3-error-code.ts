import { H3Error } from '../../src/proxy/h3/errors.js';

/** The HTTP/3 error code `fn` throws as an H3Error, or undefined if it returns; other errors rethrow. */
export function h3ErrorCode(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof H3Error) return err.code;
    throw err;
  }
  return undefined;
}
