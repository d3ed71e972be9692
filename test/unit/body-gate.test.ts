import { describe, expect, it } from 'vitest';
import { RequestBody } from '../../src/proxy/http/request-body.js';
import { BodyGate } from '../../src/proxy/upstream/body-gate.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('BodyGate', () => {
  it("a try's view takes from the client's body only while its reader wants more: it holds at most its high-water mark", async () => {
    const hwm = 64 * 1024;
    const chunk = Buffer.alloc(16 * 1024, 'a');
    const body = new RequestBody(hwm);
    const view = new BodyGate(body.stream).open();
    let got = 0;
    view.on('data', (c: Buffer) => (got += c.length));
    // A client trickling its body to an upstream that keeps up: the view waits on the body again
    // and again (on one 'readable' listener at a time).
    let pushed = 0;
    for (let i = 0; i < 20; i++) {
      body.push(Buffer.from(chunk));
      pushed += chunk.length;
      await tick();
    }
    expect(got).toBe(pushed);
    expect(body.stream.listenerCount('readable')).toBeLessThanOrEqual(1);

    // The upstream stops reading (undici pauses the view); the client sends as fast as it may.
    view.pause();
    const feeding = (async () => {
      for (let i = 0; i < 40; i++) {
        pushed += chunk.length;
        if (!body.push(Buffer.from(chunk))) await body.drained();
      }
      body.end();
    })();
    for (let i = 0; i < 20; i++) await tick();
    expect(view.readableLength).toBeLessThanOrEqual(hwm);
    expect(pushed - got).toBeLessThanOrEqual(2 * hwm + chunk.length);

    // Reading again: everything arrives.
    const end = new Promise<void>((resolve) => view.once('end', resolve));
    view.resume();
    await Promise.all([feeding, end]);
    expect(got).toBe(60 * chunk.length);
  });
});
