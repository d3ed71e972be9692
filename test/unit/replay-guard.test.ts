/**
 * The 0-RTT replay guard (src/proxy/quic/replay-guard.ts) and the admission the endpoint asks
 * before accepting: one admission per ClientHello within the window, bounded memory, fail closed.
 */
import { describe, expect, it } from 'vitest';
import { admitEarlyData } from '../../src/proxy/quic/early-data-admission.js';
import { ClientHelloAssembler } from '../../src/proxy/quic/initial/index.js';
import { REPLAY_WINDOW_MS, ReplayGuard } from '../../src/proxy/quic/replay-guard.js';
import { CHROME_INITIAL_DATAGRAMS } from './initial-chrome-capture.js';

const random = (n: number): Buffer => Buffer.alloc(32, n);

describe('ReplayGuard', () => {
  it('admits a ClientHello once and refuses the same one again within the window', () => {
    let now = 0;
    const guard = new ReplayGuard({ now: () => now });
    expect(guard.admit(random(1))).toBe('admit');
    expect(guard.admit(random(2))).toBe('admit');
    now = REPLAY_WINDOW_MS - 1;
    expect(guard.admit(random(1))).toBe('refuse-replayed');
    // After the window, TLS's own ticket-age check refuses the replay's 0-RTT: the entry may go.
    now = REPLAY_WINDOW_MS + 1;
    expect(guard.admit(random(1))).toBe('admit');
    expect(guard.size).toBe(1);
  });

  it('covers twice BoringSSL’s 60 s ticket-age tolerance', () => {
    expect(REPLAY_WINDOW_MS).toBeGreaterThanOrEqual(2 * 60_000);
  });

  it('fails closed at capacity (no 0-RTT rather than an unremembered one) until entries expire', () => {
    let now = 0;
    const guard = new ReplayGuard({ now: () => now, capacity: 3, windowMs: 1000 });
    for (let i = 0; i < 3; i++) expect(guard.admit(random(i))).toBe('admit');
    expect(guard.admit(random(9))).toBe('refuse-guard-full');
    expect(guard.admit(random(0))).toBe('refuse-replayed');
    expect(guard.size).toBe(3);
    now = 1001;
    expect(guard.admit(random(9))).toBe('admit');
    expect(guard.size).toBe(1);
  });
});

describe('admitEarlyData', () => {
  const chrome = CHROME_INITIAL_DATAGRAMS.map((h) => Buffer.from(h, 'hex'));

  it('is off without a guard (quic.early_data: off)', () => {
    const hello = new ClientHelloAssembler();
    hello.push(chrome[0]!);
    expect(admitEarlyData(undefined, hello)).toBe(false);
  });

  it('keys on the ClientHello random from the first datagram of a split ClientHello, and refuses its replay', () => {
    const guard = new ReplayGuard();
    const first = new ClientHelloAssembler();
    expect(first.push(chrome[0]!)).toBe('need-more');
    expect(first.clientRandom?.length).toBe(32);
    expect(admitEarlyData(guard, first)).toBe(true);
    const replayed = new ClientHelloAssembler();
    replayed.push(chrome[0]!);
    expect(replayed.clientRandom).toEqual(first.clientRandom);
    expect(admitEarlyData(guard, replayed)).toBe(false);
  });

  it('spends no entry on a complete ClientHello that offers no early data', () => {
    const guard = new ReplayGuard();
    const hello = new ClientHelloAssembler();
    hello.push(chrome[0]!);
    hello.push(chrome[1]!);
    expect(hello.clientHello?.offersEarlyData).toBe(false);
    expect(admitEarlyData(guard, hello)).toBe(true);
    expect(admitEarlyData(guard, hello)).toBe(true);
    expect(guard.size).toBe(0);
  });

  it('refuses 0-RTT when the random could not be read (nothing to recognise a replay by)', () => {
    const guard = new ReplayGuard();
    const hello = new ClientHelloAssembler();
    expect(() => hello.push(Buffer.alloc(1200))).toThrow();
    expect(admitEarlyData(guard, hello)).toBe(false);
  });
});
