/**
 * Hostile datagrams for the packet path, from a seed (so a failure reproduces): random bytes, long
 * headers of any version with CIDs up to the invariants' 255 bytes (RFC 8999), real client Initials
 * (RFC 9001 A.2, Chromium's split ClientHello) with bytes flipped, fields rewritten or cut short,
 * and short headers of our CID length.
 */
import { CHROME_INITIAL_DATAGRAMS } from '../unit/initial-chrome-capture.js';
import { V1_PROTECTED_PACKET } from '../unit/initial-rfc-vectors.js';
import { prng } from './prng.js';

const REAL_INITIALS = [V1_PROTECTED_PACKET, ...CHROME_INITIAL_DATAGRAMS].map((h) => Buffer.from(h, 'hex'));
const VERSIONS = [0x00000001, 0x6b3343cf, 0x00000000, 0x1a2a3a4a, 0xff00001d, 0xffffffff];

export function datagramFuzzer(seed: number, shortHeaderCidLength = 16): () => Buffer {
  const rand = prng(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

  const randomDatagram = (): Buffer => bytes(1 + int(1500));

  const longHeader = (): Buffer => {
    const size = rand() < 0.7 ? 1200 + int(300) : 1 + int(1500);
    const b = bytes(size);
    if (size > 0) b[0] = 0x80 | (b[0]! & 0x7f);
    if (size >= 5) b.writeUInt32BE(pick(VERSIONS), 1);
    // CID lengths anywhere in 0..255, and often at the two extremes.
    const cidLen = (): number => (rand() < 0.5 ? pick([0, 8, 20, 21, 254, 255]) : int(256));
    const dcidLen = cidLen();
    if (size > 5) b[5] = dcidLen;
    const scidAt = 6 + dcidLen;
    if (size > scidAt) b[scidAt] = cidLen();
    return b;
  };

  const mutatedInitial = (): Buffer => {
    const b = Buffer.from(pick(REAL_INITIALS));
    const edits = 1 + int(4);
    for (let i = 0; i < edits; i++) {
      switch (int(4)) {
        case 0: // flip a byte anywhere
          b[int(b.length)] = int(256);
          break;
        case 1: // rewrite a header field: CID lengths, token length, packet length
          b[pick([5, 6 + (b[5] ?? 0), 7 + (b[5] ?? 0) + (b[6 + (b[5] ?? 0)] ?? 0)]) % b.length] = pick([0, 1, 20, 21, 0x40, 0x7f, 0xff]);
          break;
        case 2: // flip a bit in the first 64 bytes (header, start of the protected payload)
          b[int(Math.min(64, b.length))]! ^= 1 << int(8);
          break;
        default:
          break;
      }
    }
    return rand() < 0.3 ? b.subarray(0, int(b.length) + 1) : b;
  };

  const shortHeader = (): Buffer => {
    const b = bytes(1 + int(1400));
    b[0] = 0x40 | (b[0]! & 0x3f);
    return b.length > shortHeaderCidLength ? b : Buffer.concat([b, bytes(shortHeaderCidLength)]);
  };

  const kinds = [randomDatagram, longHeader, longHeader, mutatedInitial, mutatedInitial, shortHeader];
  return () => pick(kinds)();
}
