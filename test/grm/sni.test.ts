// SNI steering with real QUIC v1 Initials: apps by exact and wildcard server names, default app
// when absent or unmatched, and a ClientHello split over two datagrams. Needs bpf/quic_sni.h (the
// build defines GRM_WITH_SNI when it exists); skipped otherwise.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Group } from '../../src/grm/group.js';
import { GenerationManager } from '../../src/grm/manager.js';
import { deriveInitialSecrets, QUIC_V1 } from '../../src/proxy/quic/initial/keys.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { clientHello, clientInitials } from '../helpers/quic-initial.js';
import { Receivers, send, udpClient } from './udp.js';

test('fixture: RFC 9001 A.1 client Initial keys', () => {
  // The keys test/helpers/quic-initial.ts protects its Initials with.
  const k = deriveInitialSecrets(Buffer.from('8394c8f03e515708', 'hex'), QUIC_V1);
  expect(k.key.toString('hex')).toBe('1f369613dd76d5467730efcbe3b1a22d');
  expect(k.iv.toString('hex')).toBe('fa044b2f42a3fd3b46fb255c');
  expect(k.hp.toString('hex')).toBe('9f50449e04a0e810283a1e9933adedd2');
});

const withSni = existsSync(resolve(__dirname, '../../bpf/quic_sni.h'));

describe.skipIf(!withSni)('SNI steering (GRM_WITH_SNI build)', () => {
  const pinDir = uniquePinDir('sni');
  const port = 49501;
  const rx = new Receivers();
  let mgr: GenerationManager;
  let group: Group;
  let client: dgram.Socket;
  const genOf = new Map<number, number>(); // receiver -> gen
  const gens: number[] = [];

  beforeAll(async () => {
    enterPrivateNetns();
    mgr = GenerationManager.open({ pinDir });
    group = mgr.openGroup({ host: '127.0.0.1', port });
    for (const app of [0, 1, 2]) {
      const gen = group.addGeneration(app);
      for (let w = 0; w < 2; w++) {
        const fd = group.createSocket();
        group.register(gen, w, fd);
        genOf.set(rx.add(fd), gen);
      }
      group.setWorking(app, gen);
      gens.push(gen);
    }
    group.setServerNames(1, ['api.example.com']);
    group.setServerNames(2, ['*.example.net']);
    client = await udpClient();
  });

  afterAll(() => {
    rx.closeAll();
    client?.close();
    try {
      mgr?.cleanup();
    } finally {
      removePinDir(pinDir);
    }
  });

  async function steer(datagrams: Buffer[]): Promise<number[]> {
    const start = rx.arrivals.length;
    for (const d of datagrams) await send(client, d, port);
    await rx.waitFor(start + datagrams.length);
    return rx.arrivals.slice(start).map((a) => genOf.get(a.receiver)!);
  }

  test.each([
    ['api.example.com', 1],
    ['API.Example.COM', 1],
    ['x.example.net', 2],
    ['a.b.example.net', 0], // a wildcard covers one label
    ['example.net', 0],
    ['other.org', 0],
  ])('%s -> app %i', async (name, app) => {
    const [gen] = await steer(clientInitials(randomBytes(8), clientHello(name)));
    expect(gen).toBe(gens[app]);
  });

  test('no server_name -> default app', async () => {
    expect(await steer(clientInitials(randomBytes(8), clientHello(null)))).toEqual([gens[0]]);
  });

  test('split ClientHello, SNI in the first datagram: both datagrams go to the SNI app', async () => {
    const hello = clientHello('api.example.com', 0, 1500);
    expect(await steer(clientInitials(randomBytes(8), hello, 900))).toEqual([gens[1], gens[1]]);
  });

  test('split ClientHello, SNI only in the second datagram: the attempt stays on the default app', async () => {
    const hello = clientHello('api.example.com', 1500);
    expect(await steer(clientInitials(randomBytes(8), hello, 900))).toEqual([gens[0], gens[0]]);
  });

  test('SNI counters', () => {
    const st = group.stats().group;
    expect(st.sni_match[1]).toBe(3n);
    expect(st.sni_match[2]).toBe(1n);
    expect(st.sni_unmatched).toBe(3n);
    expect(st.sni_none).toBeGreaterThanOrEqual(2n); // no name; split with the name in datagram 2
  });
});
