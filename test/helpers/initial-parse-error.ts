import { expect } from 'vitest';
import { InitialParseError, type InitialParseReason } from '../../src/proxy/quic/initial/errors.js';
import { ClientHelloError, type ClientHelloReason } from '../../src/proxy/tls/client-hello.js';

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

/** Asserts that `fn` throws a ClientHelloError (the shared ClientHello parser's) with exactly this reason. */
export function expectClientHelloReason(fn: () => unknown, reason: ClientHelloReason): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(ClientHelloError);
  expect((thrown as ClientHelloError).reason).toBe(reason);
}
