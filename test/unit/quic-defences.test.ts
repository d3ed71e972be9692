/**
 * The endpoint's defence modules in memory, with a fake clock: Retry tokens, admission decisions,
 * the anti-amplification budget and the pending split-ClientHello table's bounds.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AmplificationBudget, WorkerAdmission } from '../../src/proxy/quic/admission.js';
import { PendingClientHellos, trimDatagram } from '../../src/proxy/quic/pending-handshakes.js';
import { RetryTokens } from '../../src/proxy/quic/retry-token.js';
import { buildClientInitial, clientHello } from '../helpers/quic-initial.js';

const PEER = { host: '192.0.2.7', port: 4242 };

describe('Retry tokens', () => {
  const tokens = new RetryTokens(randomBytes(32), 10_000);
  const contents = { odcid: randomBytes(8), retryScid: randomBytes(16) };

  it('open for the address they were issued to, within their lifetime', () => {
    const t = tokens.seal(PEER, contents, 1_000);
    const opened = tokens.open(t, PEER, 5_000);
    expect(opened).toEqual({ kind: 'valid', contents });
  });

  it('refuse another address or port, a changed byte, another key, and age', () => {
    const t = tokens.seal(PEER, contents, 1_000);
    expect(tokens.open(t, { ...PEER, port: 4243 }, 1_000).kind).toBe('invalid');
    expect(tokens.open(t, { ...PEER, host: '192.0.2.8' }, 1_000).kind).toBe('invalid');
    for (let i = 0; i < t.length; i++) {
      const bad = Buffer.from(t);
      bad[i] = bad[i]! ^ 1;
      expect(tokens.open(bad, PEER, 1_000).kind, `byte ${i}`).toBe('invalid');
    }
    expect(new RetryTokens(randomBytes(32)).open(t, PEER, 1_000).kind).toBe('invalid');
    expect(tokens.open(t, PEER, 11_001).kind).toBe('expired');
    expect(tokens.open(Buffer.alloc(0), PEER, 1_000).kind).toBe('invalid');
  });
});

describe('admission', () => {
  const limits = { retry: 'auto', retryThreshold: 2, maxConnections: 4, maxHandshakes: 3, maxConnectionsPerIp: 3 } as const;

  it('accepts until the retry threshold, then asks unvalidated clients for a Retry', () => {
    const a = new WorkerAdmission(limits);
    expect(a.decide('a', false)).toEqual({ action: 'accept' });
    a.opened('a');
    a.opened('b');
    expect(a.decide('c', false)).toEqual({ action: 'retry' });
    expect(a.decide('c', true)).toEqual({ action: 'accept' });
  });

  it('refuses validated clients over a limit, and frees places on close', () => {
    const a = new WorkerAdmission(limits);
    for (const ip of ['a', 'a', 'a']) a.opened(ip);
    expect(a.decide('a', true)).toEqual({ action: 'refuse', limit: 'handshakes' });
    a.established();
    a.established();
    expect(a.decide('a', true)).toEqual({ action: 'refuse', limit: 'per-ip' });
    expect(a.decide('b', true)).toEqual({ action: 'accept' });
    a.opened('b');
    expect(a.decide('c', true)).toEqual({ action: 'refuse', limit: 'connections' });
    a.closed('a', false);
    expect(a.decide('a', true)).toEqual({ action: 'accept' });
  });

  it('counts pending ClientHellos as handshakes; never Retries when retry is never', () => {
    const a = new WorkerAdmission({ ...limits, retry: 'never' });
    const owner = {};
    a.setPending(owner, 3);
    expect(a.handshakesInProgress).toBe(3);
    expect(a.decide('a', false)).toEqual({ action: 'refuse', limit: 'handshakes' });
    expect(new WorkerAdmission({ ...limits, retry: 'always' }).decide('a', false)).toEqual({ action: 'retry' });
  });

  it('limits sends before validation to 3x what was received', () => {
    const b = new AmplificationBudget(false);
    expect(b.allowance).toBe(0);
    b.onReceived(1200);
    b.onSent(3000);
    expect(b.allowance).toBe(600);
    b.validate();
    expect(b.allowance).toBe(Infinity);
    expect(new AmplificationBudget(true).allowance).toBe(Infinity);
  });
});

describe('pending split ClientHellos', () => {
  /** The first part of a ClientHello announcing `hello.length` bytes, in a datagram with junk after it. */
  function firstPart(junk: number): Buffer {
    const hello = clientHello('a.test', 0, 4000);
    const pkt = buildClientInitial({ dcid: randomBytes(16), scid: randomBytes(8), pn: 0, cryptoFrames: [{ offset: 0, data: hello.subarray(0, 300) }] });
    return Buffer.concat([pkt, randomBytes(junk)]);
  }

  it('keeps no trailing bytes beyond 1200 of a datagram', () => {
    const d = firstPart(60_000);
    const kept = trimDatagram(d);
    expect(kept.length).toBe(1200);
    expect(kept.equals(d.subarray(0, 1200))).toBe(true);
    const exact = firstPart(0);
    expect(trimDatagram(exact).equals(exact)).toBe(true);
  });

  it('stays within its entry and byte bounds whatever arrives, evicting the oldest', () => {
    const discarded: string[] = [];
    const table = new PendingClientHellos({ maxEntries: 50, maxBytes: 64 * 1024, maxAgeMs: 3000 }, (why) => discarded.push(why));
    for (let i = 0; i < 1000; i++) {
      expect(table.push(`k${i}`, firstPart(60_000), i).kind).toBe('need-more');
      expect(table.size).toBeLessThanOrEqual(50);
      expect(table.bytes).toBeLessThanOrEqual(64 * 1024);
    }
    expect(table.has('k999')).toBe(true);
    expect(table.has('k0')).toBe(false);
    expect(discarded.length + table.size).toBe(1000);
    expect(new Set(discarded)).toEqual(new Set(['evicted']));
  });

  it('expires attempts by age when asked (the endpoint asks on a timer)', () => {
    const discarded: string[] = [];
    const table = new PendingClientHellos({ maxEntries: 100, maxBytes: 1 << 20, maxAgeMs: 1000 }, (why) => discarded.push(why));
    expect(table.nextExpiry).toBeUndefined();
    table.push('old', firstPart(0), 0);
    table.push('new', firstPart(0), 800);
    // The endpoint arms its timer for this: the oldest attempt's age bound.
    expect(table.nextExpiry).toBe(1000);
    table.expire(999);
    expect(table.size).toBe(2);
    table.expire(1000);
    expect([table.has('old'), table.has('new')]).toEqual([false, true]);
    expect(table.nextExpiry).toBe(1800);
    table.expire(1800);
    expect(table.size).toBe(0);
    expect(table.nextExpiry).toBeUndefined();
    expect(table.bytes).toBe(0);
    expect(discarded).toEqual(['expired', 'expired']);
  });

  it('completes a split ClientHello and hands back what quiche must replay', () => {
    const hello = clientHello('b.test', 1500);
    const dcid = randomBytes(16);
    const scid = randomBytes(8);
    const parts = [hello.subarray(0, 1000), hello.subarray(1000)];
    const table = new PendingClientHellos({ maxEntries: 10, maxBytes: 1 << 20, maxAgeMs: 1000 });
    const d0 = buildClientInitial({ dcid, scid, pn: 0, cryptoFrames: [{ offset: 0, data: parts[0]! }] });
    const d1 = buildClientInitial({ dcid, scid, pn: 1, cryptoFrames: [{ offset: 1000, data: parts[1]! }] });
    expect(table.push('x', Buffer.concat([d0, randomBytes(5000)]), 0).kind).toBe('need-more');
    const r = table.push('x', d1, 1);
    expect(r.kind).toBe('complete');
    if (r.kind !== 'complete') return;
    expect(r.hello.serverName).toBe('b.test');
    expect(r.datagrams.map((d) => d.length)).toEqual([d0.length, d1.length]);
    expect(table.size).toBe(0);
    expect(table.bytes).toBe(0);
  });
});
