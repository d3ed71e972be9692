import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RESET_TOKEN_LENGTH, ResetTokens } from '../../src/proxy/quic/reset-tokens.js';

/**
 * The documented derivation, computed independently of the module: a fresh key and cipher per
 * call, and for CIDs over 16 bytes AES-128-CBC with a zero IV, whose last block is the CBC-MAC.
 */
function expectedToken(resetKey: Buffer, listener: { host: string; port: number }, cid: Buffer): Buffer {
  const key = Buffer.from(hkdfSync('sha256', resetKey, Buffer.alloc(0), `udpgrm-proxy reset listener ${listener.host} ${listener.port} cid ${cid.length}`, 16));
  const padded = Buffer.alloc(cid.length <= 16 ? 16 : 32);
  cid.copy(padded);
  const cipher = createCipheriv('aes-128-cbc', key, Buffer.alloc(16)).setAutoPadding(false);
  const out = Buffer.concat([cipher.update(padded), cipher.final()]);
  return out.subarray(out.length - 16);
}

const v4 = { host: '127.0.0.1', port: 443 };
const v6 = { host: '::1', port: 443 };

describe('stateless reset tokens', () => {
  it('are the documented per-listener, per-length AES PRF of the CID, for every CID length', () => {
    const resetKey = randomBytes(32);
    const tokens = new ResetTokens(resetKey, v4);
    for (let length = 8; length <= 20; length++) {
      for (let i = 0; i < 4; i++) {
        const cid = randomBytes(length);
        const token = tokens.token(cid);
        expect(token.length).toBe(RESET_TOKEN_LENGTH);
        expect(token.toString('hex')).toBe(expectedToken(resetKey, v4, cid).toString('hex'));
        expect(tokens.tokenBigInt(cid)).toBe(BigInt(`0x${token.toString('hex')}`));
      }
    }
  });

  it('give a CID the same token from any instance with the same key and listener, whatever came before', () => {
    // Every worker and generation builds its own instance; the reused cipher must carry nothing over.
    const resetKey = randomBytes(32);
    const a = new ResetTokens(resetKey, v4);
    const b = new ResetTokens(Buffer.from(resetKey), { ...v4 });
    const cids = [randomBytes(16), randomBytes(20), randomBytes(8), randomBytes(16)];
    const first = cids.map((c) => a.token(c).toString('hex'));
    for (let round = 0; round < 3; round++) {
      for (const [i, c] of [...cids.entries()].reverse()) {
        expect(a.token(c).toString('hex')).toBe(first[i]);
        expect(b.token(c).toString('hex')).toBe(first[i]);
      }
    }
  });

  it('differ between listeners, reset keys and CIDs', () => {
    const resetKey = randomBytes(32);
    const cid = randomBytes(16);
    const token = new ResetTokens(resetKey, v4).token(cid).toString('hex');
    expect(new ResetTokens(resetKey, v6).token(cid).toString('hex')).not.toBe(token);
    expect(new ResetTokens(resetKey, { ...v4, port: 8443 }).token(cid).toString('hex')).not.toBe(token);
    expect(new ResetTokens(randomBytes(32), v4).token(cid).toString('hex')).not.toBe(token);
    const other = Buffer.from(cid);
    other[15]! ^= 1;
    expect(new ResetTokens(resetKey, v4).token(other).toString('hex')).not.toBe(token);
    // A 17..20 byte CID's token depends on its bytes past the first block.
    const long = randomBytes(20);
    const longOther = Buffer.from(long);
    longOther[19]! ^= 1;
    const t = new ResetTokens(resetKey, v4);
    expect(t.token(longOther).toString('hex')).not.toBe(t.token(long).toString('hex'));
    // A short CID is not its zero-padded longer form: each length has its own key.
    const short = randomBytes(8);
    expect(t.token(Buffer.concat([short, Buffer.alloc(8)])).toString('hex')).not.toBe(t.token(short).toString('hex'));
  });
});
