// Micro-benchmark (not a test): QPACK encode/decode ops/s for a typical browser request header
// set. Build with `npx tsc -p tsconfig.json`, run `node dist/bench/qpack.js`.

import { decodeFieldSection, encodeFieldSection, type FieldLine } from '../src/proxy/h3/qpack.js';
import { huffmanDecode, huffmanEncode } from '../src/proxy/h3/huffman.js';

const chromeRequest: FieldLine[] = [
  [':method', 'GET'],
  [':authority', 'www.example.com'],
  [':scheme', 'https'],
  [':path', '/assets/app.3f9c2b.js?v=1700000000'],
  ['sec-ch-ua', '"Chromium";v="120", "Not?A_Brand";v="24"'],
  ['sec-ch-ua-mobile', '?0'],
  ['sec-ch-ua-platform', '"Linux"'],
  ['user-agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'],
  ['accept', '*/*'],
  ['sec-fetch-site', 'same-origin'],
  ['sec-fetch-mode', 'no-cors'],
  ['sec-fetch-dest', 'script'],
  ['referer', 'https://www.example.com/'],
  ['accept-encoding', 'gzip, deflate, br'],
  ['accept-language', 'en-US,en;q=0.9'],
  ['cookie', 'session=4f2a9c1e8b7d6a5f4e3d2c1b0a998877; theme=dark; _ga=GA1.1.123456789.1700000000'],
  ['priority', 'u=1'],
];

function bench(name: string, fn: () => unknown, ms = 1500): void {
  for (let i = 0; i < 2000; i++) fn(); // warm up
  let ops = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 500; i++) fn();
    ops += 500;
    now = process.hrtime.bigint();
  }
  const seconds = Number(now - start) / 1e9;
  console.log(`${name.padEnd(40)} ${Math.round(ops / seconds).toLocaleString('en-US').padStart(12)} ops/s`);
}

const block = encodeFieldSection(chromeRequest);
const plainSize = chromeRequest.reduce((n, [k, v]) => n + k.length + v.length, 0);
console.log(`request: ${chromeRequest.length} fields, ${plainSize} bytes of names+values, ${block.length} bytes encoded`);

bench('encodeFieldSection (browser request)', () => encodeFieldSection(chromeRequest));
bench('decodeFieldSection (browser request)', () => decodeFieldSection(block));
const ua = chromeRequest[7][1];
const uaHuffman = huffmanEncode(ua);
bench('huffmanEncode (user-agent, 111 B)', () => huffmanEncode(ua));
bench('huffmanDecode (user-agent)', () => huffmanDecode(uaHuffman));
