import { afterAll, expect, test } from 'vitest';
import { GenerationManager } from '../../src/grm/manager.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from './netns.js';
import { Receivers, send, shortHeader, udpClient } from './udp.js';

enterPrivateNetns();
const pinDir = uniquePinDir('smoke');
const rx = new Receivers();
afterAll(() => {
  rx.closeAll();
  removePinDir(pinDir);
});

test('smoke', async () => {
  const mgr = GenerationManager.open({ pinDir, cidLength: 12 });
  const g = mgr.openGroup({ host: '127.0.0.1', port: 45001 });
  const gen = g.addGeneration();
  const fds = [g.createSocket(), g.createSocket()];
  fds.forEach((fd, w) => g.register(gen, w, fd));
  fds.forEach((fd) => rx.add(fd));
  g.setWorking(0, gen);
  console.log(g.generations());
  const c = await udpClient();
  for (let i = 0; i < 20; i++) await send(c, shortHeader(g.codec.issue(gen, i % 2), i), 45001);
  await rx.waitFor(20);
  console.log(rx.arrivals.map((a) => a.receiver).join(''));
  console.log(g.stats());
  c.close();
  mgr.close();
  expect(rx.arrivals.every((a) => a.receiver === a.msg.readUInt32BE(13) % 2)).toBe(true);
});
