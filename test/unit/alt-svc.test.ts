import { describe, expect, it } from 'vitest';
import { advertiseAltSvc, withAltSvcField } from '../../src/proxy/http/alt-svc.js';
import { respondText, type RequestHandler } from '../../src/proxy/http/exchange.js';
import { ResetWindow } from '../../src/proxy/tcp/reset-window.js';
import { MemoryExchange } from '../helpers/memory-exchange.js';

describe('Alt-Svc advertisement', () => {
  const value = 'h3=":4433"; ma=86400';

  it("replaces every alt-svc field (any case) with the listener's, keeping the others in order", () => {
    expect(
      withAltSvcField(
        [
          ['content-type', 'text/plain'],
          ['alt-svc', 'h2=":1"'],
          ['Alt-Svc', 'clear'],
          ['x-a', '1'],
        ],
        value,
      ),
    ).toEqual([
      ['content-type', 'text/plain'],
      ['x-a', '1'],
      ['alt-svc', value],
    ]);
  });

  it('wraps a handler: its responses carry the value; everything else passes through to the exchange', async () => {
    const inner: RequestHandler = {
      handle: (ex) => {
        ex.respond(200, [['alt-svc', 'h2=":1"'], ['content-length', '2']]);
        expect(ex.headersSent).toBe(true);
        ex.write(Buffer.from('ok'));
        ex.end([['x-trailer', '1']]);
      },
    };
    const ex = new MemoryExchange({ path: '/' }, { protocol: 'h2' });
    advertiseAltSvc(inner, value).handle(ex);
    expect(ex.events).toEqual([
      { type: 'respond', status: 200, headers: [['content-length', '2'], ['alt-svc', value]], endStream: false },
      { type: 'write', chunk: Buffer.from('ok') },
      { type: 'end', trailers: [['x-trailer', '1']] },
    ]);
    expect(ex.bytesSent).toBe(2);
  });

  it('without a value (alt_svc: off) the handler is used as is', () => {
    const inner: RequestHandler = { handle: (ex) => respondText(ex, 204, '') };
    expect(advertiseAltSvc(inner, undefined)).toBe(inner);
  });
});

describe('ResetWindow (rapid-reset accounting)', () => {
  it('is over the limit at the (limit+1)th event within the window, not before', () => {
    const w = new ResetWindow(3, 10_000);
    expect([w.record(0), w.record(1), w.record(2)]).toEqual([false, false, false]);
    expect(w.record(3)).toBe(true);
  });

  it('forgets events older than the window', () => {
    const w = new ResetWindow(3, 10_000);
    for (const t of [0, 1000, 2000]) expect(w.record(t)).toBe(false);
    // 0 has left the window at 10 000: three remain (1000, 2000, 10 000).
    expect(w.record(10_000)).toBe(false);
    expect(w.record(10_500)).toBe(true);
    // A slow steady rate never trips it.
    const slow = new ResetWindow(3, 10_000);
    for (let t = 0; t < 100_000; t += 3500) expect(slow.record(t)).toBe(false);
  });

  it('keeps at most limit+1 timestamps however long a flood lasts', () => {
    const w = new ResetWindow(2, 10_000);
    for (let i = 0; i < 1000; i++) w.record(i);
    expect(w.record(1000)).toBe(true);
    // After a quiet window it starts over.
    expect(w.record(20_000)).toBe(false);
  });
});
