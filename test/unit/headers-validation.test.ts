import { describe, expect, it } from 'vitest';
import {
  BodyLengthCounter,
  checkBodyLength,
  type Field,
  validateRequest,
  validateTrailers,
} from '../../src/proxy/http-semantics/index.js';
import { prng } from '../helpers/prng.js';

const base: Field[] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':authority', 'example.com'],
  [':path', '/index.html'],
];

function withFields(...extra: Field[]): Field[] {
  return [...base, ...extra];
}

function reasonOf(fields: Field[]): string {
  const result = validateRequest(fields);
  if (result.ok) throw new Error('expected a rejection');
  expect(result.kind).toBe('malformed');
  return result.reason;
}

describe('validateRequest', () => {
  it('accepts a plain GET and returns its parts', () => {
    const result = validateRequest(withFields(['accept', '*/*'], ['user-agent', 'x']));
    expect(result).toEqual({
      ok: true,
      request: {
        method: 'GET',
        scheme: 'https',
        authority: 'example.com',
        path: '/index.html',
        headers: [
          ['accept', '*/*'],
          ['user-agent', 'x'],
        ],
      },
    });
  });

  it('parses content-length', () => {
    const result = validateRequest(withFields(['content-length', '1048576']));
    expect(result.ok && result.request.contentLength).toBe(1048576);
    const same = validateRequest(withFields(['content-length', '5'], ['content-length', '5']));
    expect(same.ok && same.request.contentLength).toBe(5);
  });

  it('collapses identical content-length fields into one (RFC 9110 §8.6)', () => {
    const same = validateRequest(withFields(['accept', '*/*'], ['content-length', '5'], ['x-a', '1'], ['content-length', '5']));
    expect(same.ok && same.request.headers).toEqual([
      ['accept', '*/*'],
      ['content-length', '5'],
      ['x-a', '1'],
    ]);
  });

  it('rejects bad content-length values', () => {
    expect(reasonOf(withFields(['content-length', '-1']))).toMatch(/content-length/);
    expect(reasonOf(withFields(['content-length', '1,1']))).toMatch(/content-length/);
    expect(reasonOf(withFields(['content-length', '']))).toMatch(/content-length/);
    expect(reasonOf(withFields(['content-length', '5'], ['content-length', '6']))).toMatch(/conflicting/);
    expect(reasonOf(withFields(['content-length', '99999999999999999999']))).toMatch(/too large/);
  });

  it('rejects pseudo-headers after regular fields, unknown, response and duplicate pseudo-headers', () => {
    expect(reasonOf([[':method', 'GET'], ['accept', '*/*'], [':scheme', 'https'], [':authority', 'a'], [':path', '/']])).toMatch(
      /after a regular field/,
    );
    expect(reasonOf(withFields([':foo', 'x'] as Field))).toMatch(/not allowed/);
    expect(reasonOf([...base, [':status', '200']])).toMatch(/not allowed/);
    expect(reasonOf([...base, [':path', '/again']])).toMatch(/duplicate pseudo-header :path/);
    expect(reasonOf([[':method', 'GET'], [':method', 'GET'], [':scheme', 'https'], [':authority', 'a'], [':path', '/']])).toMatch(
      /duplicate pseudo-header :method/,
    );
  });

  it('requires :method, :scheme and :path', () => {
    expect(reasonOf(base.filter(([n]) => n !== ':method'))).toMatch(/missing :method/);
    expect(reasonOf(base.filter(([n]) => n !== ':scheme'))).toMatch(/missing :scheme/);
    expect(reasonOf(base.filter(([n]) => n !== ':path'))).toMatch(/missing :path/);
  });

  it('checks :path forms', () => {
    const withPath = (method: string, path: string): Field[] => [
      [':method', method],
      [':scheme', 'https'],
      [':authority', 'a.example'],
      [':path', path],
    ];
    expect(reasonOf(withPath('GET', ''))).toMatch(/empty :path/);
    expect(reasonOf(withPath('GET', '*'))).toMatch(/OPTIONS/);
    expect(validateRequest(withPath('OPTIONS', '*')).ok).toBe(true);
    expect(reasonOf(withPath('GET', 'http://a/b'))).toMatch(/start with/);
    expect(reasonOf(withPath('GET', '/a b'))).toMatch(/invalid characters/);
  });

  it('rejects uppercase and invalid field names and values', () => {
    expect(reasonOf(withFields(['Accept', '*/*']))).toMatch(/uppercase/);
    expect(reasonOf(withFields(['bad name', 'x']))).toMatch(/invalid field name/);
    expect(reasonOf(withFields(['x-a', 'a\r\nb']))).toMatch(/invalid characters/);
    expect(reasonOf(withFields(['x-a', 'a\0b']))).toMatch(/invalid characters/);
    expect(reasonOf(withFields(['x-a', ' padded']))).toMatch(/invalid characters/);
  });

  it('rejects connection-specific fields and te other than trailers', () => {
    for (const name of ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']) {
      expect(reasonOf(withFields([name, 'x']))).toBe(`connection-specific field ${name}`);
    }
    expect(reasonOf(withFields(['te', 'gzip']))).toMatch(/te other than/);
    expect(validateRequest(withFields(['te', 'trailers'])).ok).toBe(true);
  });

  it('checks :authority against host', () => {
    expect(validateRequest(withFields(['host', 'EXAMPLE.com'])).ok).toBe(true);
    expect(reasonOf(withFields(['host', 'other.example']))).toMatch(/differ/);
    expect(reasonOf(withFields(['host', 'example.com'], ['host', 'example.com']))).toMatch(/more than one host/);
    const hostOnly = validateRequest([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':path', '/'],
      ['host', 'h.example:8443'],
    ]);
    expect(hostOnly.ok && hostOnly.request.authority).toBe('h.example:8443');
    expect(reasonOf([[':method', 'GET'], [':scheme', 'https'], [':path', '/']])).toMatch(/missing :authority/);
    expect(reasonOf([[':method', 'GET'], [':scheme', 'https'], [':authority', 'u@h'], [':path', '/']])).toMatch(/userinfo/);
    expect(reasonOf([[':method', 'GET'], [':scheme', 'https'], [':authority', 'a/b'], [':path', '/']])).toMatch(/invalid authority/);
    expect(validateRequest([[':method', 'GET'], [':scheme', 'https'], [':authority', '[::1]:443'], [':path', '/']]).ok).toBe(true);
  });

  it('takes an authority only as a single host[:port] (RFC 3986 §3.2, RFC 9110 §7.2)', () => {
    const authority = (value: string): boolean => validateRequest([[':method', 'GET'], [':scheme', 'https'], [':authority', value], [':path', '/']]).ok;
    for (const good of ['example.com', 'EXAMPLE.com.', 'a-b_c.example:8443', 'xn--bcher-kva.example', '127.0.0.1', '127.0.0.1:443', '[::1]', '[::1]:4433', '[2001:db8::a:1]:443', '[::ffff:192.0.2.1]', 'localhost:']) {
      expect(authority(good), good).toBe(true);
    }
    for (const bad of ['localhost,evil.example', 'a;b', "a'b", 'a(b)', 'a*b', 'a+b', 'a=b', 'a!b', 'a$b', 'a&b', '%61.example', 'a..b', '.a', 'a:b', 'a:1:2', 'a:123456', 'a:65536', '[::1', '[::1]x', '[v1.x]', '[fe80::1%25eth0]', '[1.2.3.4]', '[::g]', 'a b', 'a~b']) {
      expect(authority(bad), bad).toBe(false);
    }
    expect(reasonOf(withFields(['host', 'example.com,evil.example']))).toMatch(/differ/);
    expect(reasonOf([[':method', 'GET'], [':scheme', 'https'], [':path', '/'], ['host', 'example.com,evil.example']])).toMatch(/invalid authority/);
  });

  it('treats CONNECT as unsupported and :protocol as malformed', () => {
    const connect = validateRequest([
      [':method', 'CONNECT'],
      [':authority', 'example.com:443'],
    ]);
    expect(connect).toEqual({ ok: false, kind: 'unsupported', reason: 'CONNECT is not supported' });
    expect(reasonOf([[':method', 'CONNECT'], [':protocol', 'websocket'], ...base.slice(1)])).toMatch(/:protocol/);
  });

  it('treats non-http schemes as unsupported', () => {
    const result = validateRequest([[':method', 'GET'], [':scheme', 'ftp'], [':authority', 'a'], [':path', '/']]);
    expect(result.ok === false && result.kind).toBe('unsupported');
  });
});

describe('validateTrailers', () => {
  it('accepts ordinary trailers', () => {
    expect(validateTrailers([['x-checksum', 'abc']])).toEqual({ ok: true, trailers: [['x-checksum', 'abc']] });
  });
  it('rejects pseudo-headers, uppercase and connection-specific fields', () => {
    expect(validateTrailers([[':status', '200']]).ok).toBe(false);
    expect(validateTrailers([['X-Sum', '1']]).ok).toBe(false);
    expect(validateTrailers([['transfer-encoding', 'chunked']]).ok).toBe(false);
  });
});

describe('content-length vs DATA', () => {
  it('checkBodyLength flags excess immediately and shortfall at the end', () => {
    expect(checkBodyLength(undefined, 10, true)).toBeNull();
    expect(checkBodyLength(10, 5, false)).toBeNull();
    expect(checkBodyLength(10, 5, true)).toMatch(/shorter/);
    expect(checkBodyLength(10, 11, false)).toMatch(/exceeds/);
    expect(checkBodyLength(10, 10, true)).toBeNull();
  });
  it('BodyLengthCounter counts frames', () => {
    const counter = new BodyLengthCounter(8);
    expect(counter.add(4)).toBeNull();
    expect(counter.finish()).toMatch(/shorter/);
    expect(counter.add(4)).toBeNull();
    expect(counter.finish()).toBeNull();
    expect(counter.add(1)).toMatch(/exceeds/);
    expect(counter.received).toBe(9);
  });
});

describe('field grammar by character code', () => {
  it('agrees with the regular expressions on every single character and on ~40,000 mixed strings', async () => {
    const { FIELD_GRAMMAR, isFieldValue, isLowercaseToken, isToken } = await import('../../src/proxy/http-semantics/fields.js');
    const asRegex = {
      token: (s: string) => FIELD_GRAMMAR.token.test(s),
      lowercaseToken: (s: string) => FIELD_GRAMMAR.lowercaseToken.test(s),
      fieldValue: (s: string) => {
        if (!FIELD_GRAMMAR.fieldValue.test(s)) return false;
        return s.length === 0 || !/^[ \t]|[ \t]$/.test(s);
      },
    };
    const check = (s: string): void => {
      expect(isToken(s), JSON.stringify(s)).toBe(asRegex.token(s));
      expect(isLowercaseToken(s), JSON.stringify(s)).toBe(asRegex.lowercaseToken(s));
      expect(isFieldValue(s), JSON.stringify(s)).toBe(asRegex.fieldValue(s));
    };
    check('');
    for (let c = 0; c < 0x120; c++) {
      const ch = String.fromCharCode(c);
      check(ch);
      check(`a${ch}`);
      check(`${ch}a`);
      check(`a${ch}b`);
    }
    // Seeded, so a failure repeats.
    const random = prng(0x9e3779b9);
    const next = (n: number): number => Math.floor(random() * n);
    const alphabet = ['a', 'Z', '0', '-', '!', '~', ' ', '\t', ':', '"', '(', '\x00', '\r', '\n', '\x7f', '\x80', '\xff', '\u0100', '/', ','];
    for (let i = 0; i < 40_000; i++) {
      let s = '';
      const length = next(8);
      for (let j = 0; j < length; j++) s += alphabet[next(alphabet.length)];
      check(s);
    }
  });
});
