// Micro-benchmark (not a test): CPU cost of reading a client's first flight before accept, per
// datagram: decryptClientInitial (Initial keys derived on each call) and a full
// ClientHelloAssembler.push of a one-datagram ClientHello from a real quiche client.
// Build with `npx tsc -p tsconfig.json`, run `node dist/bench/initial-decrypt.js [iterations]`.

import { randomBytes } from 'node:crypto';
import { ClientHelloAssembler } from '../src/proxy/quic/initial/assembler.js';
import { decryptClientInitial } from '../src/proxy/quic/initial/packet.js';
import { quicheClientInitial } from '../test/helpers/quic-initial.js';

const ITERATIONS = Number(process.argv[2] ?? 2000);

function microsPerCall(fn: () => unknown): number {
  for (let i = 0; i < 200; i++) fn(); // warm up
  const t = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) fn();
  return Number(process.hrtime.bigint() - t) / 1000 / ITERATIONS;
}

const datagram = quicheClientInitial('sni.example', ['h3'], randomBytes(16));
const decryptUs = microsPerCall(() => decryptClientInitial(datagram));
const pushUs = microsPerCall(() => new ClientHelloAssembler().push(datagram));
console.log(`client Initial of ${datagram.length} bytes, ${ITERATIONS} iterations`);
console.log(`${'decryptClientInitial (keys derived each call)'.padEnd(52)} ${decryptUs.toFixed(1).padStart(7)} µs`);
console.log(`${'ClientHelloAssembler.push, one-datagram ClientHello'.padEnd(52)} ${pushUs.toFixed(1).padStart(7)} µs`);
