/**
 * The HTTP/1.1 interim-response filter (src/proxy/upstream/interim-filter.ts) on byte streams:
 * 100 Continue heads are removed at response boundaries only, however the stream is split into
 * reads; anything the filter does not fully understand makes it step aside.
 */
import { describe, expect, it } from 'vitest';
import { afterHead, InterimResponseFilter } from '../../src/proxy/upstream/interim-filter.js';

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

/** Feed `pieces` (latin1) through a new filter, then end it; returns what came out and the filter. */
function run(pieces: readonly string[]): { out: string; filter: InterimResponseFilter } {
  const filter = new InterimResponseFilter();
  const parts = pieces.map((p) => filter.push(Buffer.from(p, 'latin1')));
  parts.push(filter.end());
  return { out: Buffer.concat(parts).toString('latin1'), filter };
}

/** The filter's output for `stream` cut at every position (and into single bytes) is always `expected`. */
function expectEverySplit(stream: string, expected: string): void {
  expect(run([stream]).out).toBe(expected);
  expect(run([...stream]).out).toBe(expected);
  for (let cut = 1; cut < stream.length; cut++) {
    expect(run([stream.slice(0, cut), stream.slice(cut)]).out, `cut at ${cut}`).toBe(expected);
  }
}

describe('removes 100 Continue at response boundaries (RFC 9110 §15.2)', () => {
  it('drops a 100 before the final response, however the bytes are split', () => {
    const final = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';
    expectEverySplit(CONTINUE + final, final);
    expect(run([CONTINUE + final]).filter.dropped).toBe(1);
  });

  it('drops 100s with fields, HTTP/1.0 and no reason phrase; keeps other 1xx', () => {
    const hints = 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n';
    const final = 'HTTP/1.1 204 No Content\r\n\r\n';
    expectEverySplit(`HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n${hints}HTTP/1.0 100\r\n\r\n${final}`, hints + final);
  });

  it('finds the next boundary after content-length, chunked (extensions, trailers) and bodiless responses', () => {
    const first = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc';
    // RFC 9112 §7.1: chunk extensions, a last chunk, then a trailer section.
    const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n';
    const notModified = 'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n';
    const last = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
    expectEverySplit(`${CONTINUE}${first}${CONTINUE}${chunked}${CONTINUE}${notModified}${CONTINUE}${last}${CONTINUE}`, first + chunked + notModified + last);
  });

  it('leaves 100-shaped bytes inside bodies alone', () => {
    const inLength = `HTTP/1.1 200 OK\r\nContent-Length: ${CONTINUE.length}\r\n\r\n${CONTINUE}`;
    const inChunk = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${CONTINUE.length.toString(16)}\r\n${CONTINUE}\r\n0\r\n\r\n`;
    expectEverySplit(inLength + inChunk, inLength + inChunk);
  });

  it('does not take other statuses that start like 100 for one', () => {
    for (const line of ['HTTP/1.1 1000 X', 'HTTP/1.1 101 Switching', 'HTTP/1.2 100 Continue', 'HTTP/1.1 100x']) {
      const stream = `${line}\r\n\r\n`;
      expect(run([stream]).out, line).toBe(stream);
    }
  });

  it('hands on a 100 head cut off by the end of the connection, for the parser to judge', () => {
    expect(run(['HTTP/1.1 100 Cont']).out).toBe('HTTP/1.1 100 Cont');
  });
});

describe('steps aside on framing it does not fully understand', () => {
  const later = `${CONTINUE}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n`;
  it.each([
    ['a body delimited by the connection close', 'HTTP/1.1 200 OK\r\n\r\nbody'],
    ['transfer-coding other than a lone chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
    ['chunked together with content-length', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n'],
    ['differing content-length values', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
    ['a bare LF', 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 0\r\n\r\n'],
    ['101 Switching Protocols', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n'],
    ['a bad chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    ['chunk data not followed by CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n'],
  ])('%s: everything after passes untouched', (_what, first) => {
    const { out, filter } = run([first + later]);
    expect(out).toBe(first + later);
    expect(filter.opaque).toBe(true);
    expect(filter.dropped).toBe(0);
  });

  it('a head longer than 64 KiB', () => {
    const big = `HTTP/1.1 100 Continue\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`;
    const { out, filter } = run([big.slice(0, 40_000), big.slice(40_000)]);
    expect(out).toBe(big);
    expect(filter.opaque).toBe(true);
  });
});

describe('passes a read on without copying when nothing is removed', () => {
  it('hands on the very buffer read when it holds whole responses, and a new one when a 100 was cut out', () => {
    const filter = new InterimResponseFilter();
    const twoResponses = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n', 'latin1');
    expect(filter.push(twoResponses)).toBe(twoResponses);
    const withContinue = Buffer.from(`${CONTINUE}HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi`, 'latin1');
    const out = filter.push(withContinue);
    expect(out).not.toBe(withContinue);
    expect(out.toString('latin1')).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi');
    // Bytes held from an earlier read (a head that might be a 100) go on joined with this read's.
    const start = Buffer.from('HTTP/1.1 1', 'latin1');
    expect(filter.push(start).length).toBe(0);
    const rest = Buffer.from('00 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'latin1');
    expect(filter.push(rest).toString('latin1')).toBe('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  });
});

/**
 * The head reader works on bytes; the rules it follows are RFC 9112's grammar, written here once
 * more as regular expressions over the head's text (the way the filter first read heads), and the
 * two must agree on every head built from valid and broken pieces.
 */
describe('the head reader agrees with the grammar written as regular expressions', () => {
  const STATUS = /^HTTP\/1\.[01] (\d{3})(?: [\t\x20-\x7e\x80-\xff]*)?$/;
  const FIELD = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([^\r\n]*?)[\t ]*$/;
  function byGrammar(head: string): unknown {
    const lines = head.split('\r\n');
    if (lines.some((l) => l.includes('\r') || l.includes('\n'))) return 'opaque';
    const status = STATUS.exec(lines[0]!);
    if (status === null) return 'opaque';
    const code = Number(status[1]);
    const lengths: string[] = [];
    const codings: string[] = [];
    for (const line of lines.slice(1)) {
      const field = FIELD.exec(line);
      if (field === null) return 'opaque';
      const name = field[1]!.toLowerCase();
      if (name === 'content-length') lengths.push(field[2]!);
      else if (name === 'transfer-encoding') codings.push(field[2]!);
    }
    if (code === 100) return 'drop';
    if (code === 101 || code < 100 || code > 599) return 'opaque';
    if (code < 200 || code === 204 || code === 304) return 'head';
    if (codings.length > 0) return codings.length !== 1 || codings[0]!.toLowerCase() !== 'chunked' || lengths.length > 0 ? 'opaque' : 'chunked';
    if (lengths.length === 0 || !lengths.every((v) => v === lengths[0] && /^\d{1,15}$/.test(v))) return 'opaque';
    return Number(lengths[0]) === 0 ? 'head' : `body ${Number(lengths[0])}`;
  }
  function byReader(head: string): unknown {
    const bytes = Buffer.from(`${head}\r\n\r\n`, 'latin1');
    const mode = afterHead(bytes, bytes.indexOf('\r\n\r\n'));
    if (mode === 'drop') return 'drop';
    if (mode.kind === 'line') return 'chunked';
    if (mode.kind === 'body') return `body ${mode.remaining}`;
    return mode.kind;
  }
  const statuses = ['HTTP/1.1 200 OK', 'HTTP/1.0 100', 'HTTP/1.1 100 Continue', 'HTTP/1.1 204 No Content', 'HTTP/1.1 304', 'HTTP/1.1 103 Early Hints',
    'HTTP/1.1 101 Switching', 'HTTP/1.1 099 x', 'HTTP/1.1 600 x', 'HTTP/1.2 200 OK', 'HTTP/1.1  200', 'HTTP/1.1 20 OK', 'HTTP/1.1 2000', 'http/1.1 200 OK',
    'HTTP/1.1 200 \x7f', 'HTTP/1.1 200 caf\xe9\tok', 'HTTP/1.1 200OK', 'HTTP/1.1 200 \x01', 'HTTP/1.1 200 OK\r', 'HTTP/1.1 200 OK\n'];
  const fields = ['Content-Length: 5', 'content-length:5', 'CONTENT-LENGTH: \t5\t ', 'Content-Length: 6', 'Content-Length: 0', 'Content-Length: 5x',
    'Content-Length: 1234567890123456', 'Content-Length: ', 'Transfer-Encoding: chunked', 'transfer-encoding: CHUNKED ', 'Transfer-Encoding: gzip, chunked',
    'X-A: 1', 'X-A:', 'X-A : 1', ': 1', 'X(A): 1', 'X-A: a\rb', 'X-A: a\nb', '  folded', '', 'Content-Lengthx: 5', 'Content_Length: 5', 'X-\xe9: 1', 'X-A: \x00\x7f\xff'];
  it('on every status line with up to two fields, and on random longer heads', () => {
    const heads: string[] = [];
    for (const st of statuses) {
      heads.push(st);
      for (const a of fields) {
        heads.push(`${st}\r\n${a}`);
        for (const b of fields) heads.push(`${st}\r\n${a}\r\n${b}`);
      }
    }
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 5000; i++) {
      const lines = [statuses[random(statuses.length)]!];
      for (let k = random(6); k > 0; k--) lines.push(fields[random(fields.length)]!);
      heads.push(lines.join('\r\n'));
    }
    // A head ends at the first CRLFCRLF: one with an empty line inside (or at its end) is a shorter head.
    const whole = heads.filter((h) => `${h}\r\n\r\n`.indexOf('\r\n\r\n') === h.length);
    expect(whole.length).toBeGreaterThan(10_000);
    const disagreements = whole.filter((h) => byReader(h) !== byGrammar(h));
    expect(disagreements.slice(0, 5).map((h) => [h, byReader(h), byGrammar(h)])).toEqual([]);
  });
});
