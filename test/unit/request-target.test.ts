/** Request-target normalisation for routing (src/proxy/http-semantics/request-target.ts). */
import { describe, expect, it } from 'vitest';
import { mergeSlashes, normaliseTarget, removeDotSegments } from '../../src/proxy/http-semantics/index.js';
import { isAlreadyNormal, normaliseTargetInFull } from '../../src/proxy/http-semantics/request-target.js';
import { prng } from '../helpers/prng.js';

function routed(target: string): string {
  const n = normaliseTarget(target);
  if (!n.ok) throw new Error(`refused: ${n.reason}`);
  return n.target.path;
}

function refusal(target: string): string {
  const n = normaliseTarget(target);
  if (n.ok) throw new Error(`accepted as ${n.target.path}`);
  return n.reason;
}

describe('removeDotSegments (RFC 3986 §5.2.4)', () => {
  it('the examples of §5.2.4', () => {
    expect(removeDotSegments('/a/b/c/./../../g')).toBe('/a/g');
    expect(removeDotSegments('mid/content=5/../6')).toBe('mid/6');
  });

  // §5.4.1 and §5.4.2 resolve references against base "http://a/b/c/d;p?q"; these are the merged
  // paths (§5.2.3) of those references and the paths the RFC's results have.
  it.each([
    ['/b/c/g', '/b/c/g'],
    ['/b/c/./g', '/b/c/g'],
    ['/b/c/g/', '/b/c/g/'],
    ['/b/c/.', '/b/c/'],
    ['/b/c/./', '/b/c/'],
    ['/b/c/..', '/b/'],
    ['/b/c/../', '/b/'],
    ['/b/c/../g', '/b/g'],
    ['/b/c/../..', '/'],
    ['/b/c/../../', '/'],
    ['/b/c/../../g', '/g'],
    ['/b/c/../../../g', '/g'],
    ['/b/c/../../../../g', '/g'],
    ['/./g', '/g'],
    ['/../g', '/g'],
    ['/b/c/g.', '/b/c/g.'],
    ['/b/c/.g', '/b/c/.g'],
    ['/b/c/g..', '/b/c/g..'],
    ['/b/c/..g', '/b/c/..g'],
    ['/b/c/./../g', '/b/g'],
    ['/b/c/./g/.', '/b/c/g/'],
    ['/b/c/g/./h', '/b/c/g/h'],
    ['/b/c/g/../h', '/b/c/h'],
    ['/b/c/g;x=1/./y', '/b/c/g;x=1/y'],
    ['/b/c/g;x=1/../y', '/b/c/y'],
  ])('%s → %s (§5.4)', (merged, result) => {
    expect(removeDotSegments(merged)).toBe(result);
  });
});

describe('normaliseTarget', () => {
  it('decodes percent-encoded unreserved characters and uppercases the rest (RFC 3986 §6.2.2.1-2)', () => {
    expect(routed('/%7Esmith/home.html')).toBe('/~smith/home.html');
    expect(routed('/%68ealthz')).toBe('/healthz');
    expect(routed('/%41%5a%30%2d%2E%5F%7e')).toBe('/AZ0-._~');
    expect(routed('/a%3ab%3A%20c')).toBe('/a%3Ab%3A%20c');
    // Only one level: an encoded "%" stays encoded, so "%2541" is not "A".
    expect(routed('/%2541')).toBe('/%2541');
  });

  it('merges duplicate slashes, then removes dot segments, "%2E" included', () => {
    expect(mergeSlashes('//a///b/')).toBe('/a/b/');
    expect(routed('//healthz')).toBe('/healthz');
    expect(routed('/x/../healthz')).toBe('/healthz');
    expect(routed('/a//../b')).toBe('/b');
    expect(routed('/%2e%2E/healthz')).toBe('/healthz');
    expect(routed('/a/.%2e/b')).toBe('/b');
  });

  it('percent-encodes octets above 0x7E, so raw and encoded spellings route alike', () => {
    expect(routed('/caf\xc3\xa9')).toBe('/caf%C3%A9');
    expect(routed('/caf%c3%a9')).toBe('/caf%C3%A9');
  });

  it('keeps the query out of routing; forwards the target as received, or normalised (octets encoded in both)', () => {
    const n = normaliseTarget('/a/./b//%63?q=/../%2e&r=\xe9');
    expect(n).toEqual({
      ok: true,
      target: { path: '/a/b/c', normalised: '/a/b/c?q=/../%2e&r=%E9', received: '/a/./b//%63?q=/../%2e&r=%E9' },
    });
    expect(normaliseTarget('*')).toEqual({ ok: true, target: { path: '*', normalised: '*', received: '*' } });
  });

  it('refuses what cannot be normalised safely', () => {
    expect(refusal('/a%2Fb')).toMatch(/encoded "\/" \(%2F\)/);
    expect(refusal('/a%2fb')).toMatch(/%2F/);
    expect(refusal('/a%5cb')).toMatch(/encoded "\\" \(%5C\)/);
    expect(refusal('/a\\b')).toMatch(/"\\" in the path/);
    expect(refusal('/a%00')).toMatch(/NUL/);
    for (const bad of ['/a%', '/a%2', '/a%zz', '/a%g1']) expect(refusal(bad), bad).toMatch(/invalid percent-encoding/);
    expect(refusal('/a#b')).toMatch(/fragment/);
    expect(refusal('/a?b#c')).toMatch(/fragment/);
    expect(refusal('/a b')).toMatch(/control character or space/);
    expect(refusal('/a\x7f')).toMatch(/control character/);
    expect(refusal('/\u0100')).toMatch(/outside octets/);
  });

  it('leaves a backslash or %2F in the query alone', () => {
    expect(normaliseTarget('/a?b=\\&c=%2F')).toMatchObject({ ok: true, target: { path: '/a', received: '/a?b=\\&c=%2F' } });
  });
});

describe('the already-normal shortcut', () => {
  it('gives what the full normalisation gives, on ~60,000 targets built from the characters that matter', () => {
    // Seeded, so a failure repeats.
    const random = prng(0x2545f491);
    const next = (n: number): number => Math.floor(random() * n);
    const alphabet = ['/', '/', '/', '.', '.', '%', '2', 'e', 'E', 'F', 'f', '5', 'c', 'a', 'Z', '?', '#', '\\', ' ', '\x7f', '\x00', '\xe9', '\u0100', '~', '-', '_', ':', '@', '&', '=', '*', '+'];
    let shortcut = 0;
    for (let i = 0; i < 60_000; i++) {
      let target = i % 3 === 0 ? '' : '/';
      const length = next(12);
      for (let j = 0; j < length; j++) target += alphabet[next(alphabet.length)];
      if (isAlreadyNormal(target)) shortcut++;
      expect(normaliseTarget(target), JSON.stringify(target)).toEqual(normaliseTargetInFull(target));
    }
    // Both ways were taken often.
    expect(shortcut).toBeGreaterThan(5_000);
    expect(shortcut).toBeLessThan(55_000);
  });

  it('is taken by ordinary targets and not by ones normalisation changes', () => {
    for (const t of ['/', '/bytes?n=1024', '/a/b.c/d?x=/../%2F#', '/a-b_c~d/e:f@g', '']) expect(isAlreadyNormal(t.replace('#', '')), t).toBe(true);
    for (const t of ['//a', '/a//b', '/./a', '/a/..', '.', '../a', '/a/.b', '/%61', '/a\\b', '/a b', '/\xe9', '/a#b', '/a?b#c']) expect(isAlreadyNormal(t), t).toBe(false);
  });
});
