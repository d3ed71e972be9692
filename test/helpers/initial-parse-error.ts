import { expect } from 'vitest';
import { InitialParseError, type InitialParseReason } from '../../src/proxy/quic/initial/errors.js';

/** Asserts that `fn` throws an InitialParseError with exactly this reason. */
export function expectInitialParseReason(fn: () => unknown, reason: InitialParseReason): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(InitialParseError);
  expect((thrown as InitialParseError).reason).toBe(reason);
}
