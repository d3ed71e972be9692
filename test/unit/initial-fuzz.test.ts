import { describe, expect, it } from 'vitest';
import { ClientHelloAssembler } from '../../src/proxy/quic/initial/assembler.js';
import { ClientHelloError, parseClientHello } from '../../src/proxy/tls/client-hello.js';
import { InitialParseError } from '../../src/proxy/quic/initial/errors.js';
import { extractCryptoFrames } from '../../src/proxy/quic/initial/frames.js';
import { QUIC_V2 } from '../../src/proxy/quic/initial/keys.js';
import { decryptClientInitial, decryptClientInitials } from '../../src/proxy/quic/initial/packet.js';
import { buildClientInitial, encodeCryptoFrame, quicheClientInitial } from '../helpers/quic-initial.js';
import { CHROME_INITIAL_DATAGRAMS } from './initial-chrome-capture.js';
import { V1_PROTECTED_PACKET, V2_PROTECTED_PACKET } from './initial-rfc-vectors.js';

/** xorshift32: deterministic, so a failure reproduces from its seed and iteration. */
function prng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** One random mutation: overwrite, bit flip, truncate, insert, delete, or duplicate a span. */
function mutate(input: Buffer, rand: (n: number) => number, protectStart = 0): Buffer {
  const b = Buffer.from(input);
  const at = () => protectStart + rand(Math.max(1, b.length - protectStart));
  switch (rand(7)) {
    case 0: {
      for (let i = 1 + rand(6); i > 0; i--) b[at()] = rand(256);
      return b;
    }
    case 1: {
      const i = at();
      b[i] = b[i]! ^ (1 << rand(8));
      return b;
    }
    case 2:
      return b.subarray(0, at());
    case 3: {
      const i = at();
      return Buffer.concat([b.subarray(0, i), Buffer.from([...Array(1 + rand(8))].map(() => rand(256))), b.subarray(i)]);
    }
    case 4: {
      const i = at();
      return Buffer.concat([b.subarray(0, i), b.subarray(i + 1 + rand(16))]);
    }
    case 5: {
      const i = at();
      return Buffer.concat([b, b.subarray(i, i + 1 + rand(64))]);
    }
    default: {
      // Interesting boundary values in a random spot.
      const i = at();
      b[i] = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xff][rand(9)]!;
      return b;
    }
  }
}

/** The only outcomes allowed: a value, or the reader's own error (InitialParseError; ClientHelloError from the bare parser). */
function outcome(fn: () => unknown, errorType: typeof InitialParseError | typeof ClientHelloError = InitialParseError): 'ok' | 'error' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (!(err instanceof errorType)) throw err;
    expect(typeof err.reason).toBe('string');
    return 'error';
  }
}

const ITERATIONS = 3000;

describe('fuzz: mutated Initials end only in InitialParseError or a result', () => {
  const seeds = [
    quicheClientInitial('fuzz.example', ['h3', 'hq-interop'], Buffer.alloc(16, 9)),
    Buffer.from(V1_PROTECTED_PACKET, 'hex'),
    Buffer.from(V2_PROTECTED_PACKET, 'hex'),
    ...CHROME_INITIAL_DATAGRAMS.map((h) => Buffer.from(h, 'hex')),
  ];

  it('protected datagrams (header and ciphertext mutations)', () => {
    const rand = prng(0x5eed1);
    const counts = { ok: 0, error: 0 };
    for (let i = 0; i < ITERATIONS; i++) {
      const seed = seeds[i % seeds.length]!;
      // Bias half of the mutations into the first 64 bytes, where the header lives.
      let d = i % 2 === 0 ? mutate(seed.subarray(0, 64), rand) : mutate(seed, rand);
      if (i % 2 === 0) d = Buffer.concat([d, seed.subarray(64)]);
      if (rand(4) === 0) d = mutate(d, rand);
      counts[outcome(() => decryptClientInitials(d))]++;
      outcome(() => new ClientHelloAssembler({ minDatagramSize: 0 }).push(d));
      // After a good first half of a split ClientHello, and before it.
      const assembler = new ClientHelloAssembler({ minDatagramSize: 0 });
      outcome(() => assembler.push(seeds[3]!));
      outcome(() => assembler.push(d));
      outcome(() => assembler.push(seeds[4]!));
    }
    expect(counts.error).toBeGreaterThan(0);
    expect(counts.ok).toBeGreaterThan(0);
  });

  it('decrypted payloads (frame-level mutations, re-protected so they authenticate)', () => {
    const rand = prng(0x5eed2);
    // quiche: one CRYPTO frame then PADDING; Chromium: shuffled CRYPTO frames among PING/PADDING.
    const originals = [decryptClientInitial(seeds[0]!), decryptClientInitial(seeds[3]!)];
    const payloads = [originals[0]!.payload.subarray(0, 600), originals[1]!.payload];
    const results = { 'need-more': 0, hello: 0, error: 0 };
    for (let i = 0; i < ITERATIONS; i++) {
      const original = originals[i % 2]!;
      let p = mutate(payloads[i % 2]!, rand);
      if (rand(3) === 0) p = mutate(p, rand);
      const d = buildClientInitial({ dcid: original.dcid, scid: original.scid, pn: 0, extraFrames: p, version: i % 5 === 0 ? QUIC_V2 : undefined });
      try {
        results[new ClientHelloAssembler().push(d) === 'need-more' ? 'need-more' : 'hello']++;
      } catch (err) {
        if (!(err instanceof InitialParseError)) throw err;
        results.error++;
      }
    }
    expect(results.error).toBeGreaterThan(0);
    expect(results['need-more'] + results.hello).toBeGreaterThan(0);
  });

  it('ClientHello bytes (TLS-level mutations) through the assembler and the parser', () => {
    const rand = prng(0x5eed3);
    const original = decryptClientInitial(seeds[0]!);
    const hello = Buffer.concat(extractCryptoFrames(original.payload).map((f) => f.data));
    expect(parseClientHello(hello).serverName).toBe('fuzz.example');
    const results = { ok: 0, error: 0 };
    for (let i = 0; i < ITERATIONS; i++) {
      let h = mutate(hello, rand, 4); // keep the handshake header most of the time...
      if (rand(8) === 0) h = mutate(h, rand); // ...but not always
      results[outcome(() => parseClientHello(h), ClientHelloError)]++;
      // The same bytes split at a random point across two datagrams, delivered in random order.
      const cut = rand(h.length + 1);
      const parts = [
        buildClientInitial({ dcid: original.dcid, scid: original.scid, pn: 0, extraFrames: encodeCryptoFrame(0, h.subarray(0, cut)) }),
        buildClientInitial({ dcid: original.dcid, scid: original.scid, pn: 1, extraFrames: encodeCryptoFrame(cut, h.subarray(cut)) }),
      ];
      if (rand(2) === 0) parts.reverse();
      const assembler = new ClientHelloAssembler();
      for (const part of parts) outcome(() => assembler.push(part));
    }
    expect(results.error).toBeGreaterThan(0);
    expect(results.ok).toBeGreaterThan(0);
  });
});
