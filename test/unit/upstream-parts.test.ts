import { errors as undiciErrors } from 'undici';
import { describe, expect, it } from 'vitest';
import { RequestBody } from '../../src/proxy/http/request-body.js';
import { Balancer, classifyUpstreamError, ExchangeAbortedError, UpstreamError } from '../../src/proxy/upstream/index.js';

describe('classifyUpstreamError', () => {
  const target = 'http://127.0.0.1:1';
  const cases: Array<[unknown, string, number]> = [
    [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'connect_refused', 502],
    [new undiciErrors.ConnectTimeoutError(), 'connect_timeout', 504],
    [new undiciErrors.HeadersTimeoutError(), 'response_timeout', 504],
    [new undiciErrors.BodyTimeoutError(), 'body_timeout', 504],
    [new undiciErrors.SocketError('other side closed'), 'reset', 502],
    [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'reset', 502],
    [new undiciErrors.ResponseContentLengthMismatchError(), 'reset', 502],
    [Object.assign(new Error('Invalid status code'), { code: 'HPE_INVALID_STATUS' }), 'invalid_response', 502],
    [new undiciErrors.ClientClosedError(), 'other', 502],
    [Object.assign(new Error('x'), { code: 'EHOSTUNREACH' }), 'connect_failed', 502],
    [Object.assign(new Error('connect ENOENT /run/app.sock'), { code: 'ENOENT' }), 'connect_failed', 502],
    [Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), 'tls', 502],
    [Object.assign(new Error("Hostname/IP does not match certificate's altnames"), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), 'tls', 502],
    [Object.assign(new Error('wrong version number'), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }), 'tls', 502],
    [new ExchangeAbortedError('client went away'), 'aborted', 502],
    [new AggregateError([Object.assign(new Error('a'), { code: 'ECONNREFUSED' })]), 'connect_refused', 502],
    ['a string', 'other', 502],
  ];
  it.each(cases)('%s → %s', (err, kind, status) => {
    const mapped = classifyUpstreamError(err, target);
    expect(mapped).toBeInstanceOf(UpstreamError);
    expect(mapped.kind).toBe(kind);
    expect(mapped.status).toBe(status);
    expect(mapped.target).toBe(target);
    expect(mapped.reason.length).toBeGreaterThan(0);
  });
});

describe('Balancer', () => {
  const all = (): boolean => true;
  it('round robin cycles through targets', () => {
    const targets = [{ inFlight: 0, id: 'a' }, { inFlight: 5, id: 'b' }, { inFlight: 0, id: 'c' }];
    const balancer = new Balancer<(typeof targets)[number]>('round_robin');
    expect(Array.from({ length: 6 }, () => balancer.pick(targets, all)?.id)).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });
  it('round robin skips targets not accepted and keeps the rotation fair among the rest', () => {
    const targets = [{ inFlight: 0, id: 'a' }, { inFlight: 0, id: 'b' }, { inFlight: 0, id: 'c' }];
    const balancer = new Balancer<(typeof targets)[number]>('round_robin');
    const notA = (t: { id: string }): boolean => t.id !== 'a';
    expect(Array.from({ length: 6 }, () => balancer.pick(targets, notA)?.id)).toEqual(['b', 'c', 'b', 'c', 'b', 'c']);
  });
  it('least requests picks the fewest in flight, rotating among ties', () => {
    const targets = [{ inFlight: 2, id: 'a' }, { inFlight: 0, id: 'b' }, { inFlight: 0, id: 'c' }];
    const balancer = new Balancer<(typeof targets)[number]>('least_requests');
    expect(Array.from({ length: 4 }, () => balancer.pick(targets, all)?.id)).toEqual(['b', 'b', 'c', 'b']);
  });
  it('gives nothing for an empty list or when no target is accepted', () => {
    const balancer = new Balancer<{ inFlight: number }>('least_requests');
    expect(balancer.pick([], all)).toBeUndefined();
    expect(balancer.pick([{ inFlight: 0 }], () => false)).toBeUndefined();
  });
});

describe('RequestBody', () => {
  it('reports a full buffer and resolves drained() when the consumer reads', async () => {
    const pipe = new RequestBody(8);
    expect(pipe.push(Buffer.alloc(4))).toBe(true);
    expect(pipe.push(Buffer.alloc(4))).toBe(false);
    expect(pipe.needsDrain).toBe(true);
    let drained = false;
    const waiting = pipe.drained().then(() => {
      drained = true;
    });
    expect(drained).toBe(false);
    const first = await new Promise<Buffer>((resolve) => pipe.stream.once('data', resolve));
    pipe.stream.pause();
    expect(first.length).toBeGreaterThan(0);
    await waiting;
    expect(drained).toBe(true);
  });

  it('ends with trailers kept for the record', async () => {
    const pipe = new RequestBody();
    pipe.push(Buffer.from('abc'));
    pipe.end([['x-sum', '1']]);
    const chunks: Buffer[] = [];
    for await (const chunk of pipe.stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('abc');
    expect(pipe.trailers).toEqual([['x-sum', '1']]);
    expect(pipe.closed).toBe(true);
    expect(() => pipe.push(Buffer.from('x'))).toThrow(/after end/);
  });

  it('abort() fails the stream with ExchangeAbortedError and releases waiters; later pushes are discarded', async () => {
    const pipe = new RequestBody(4);
    pipe.push(Buffer.alloc(8));
    const waiting = pipe.drained();
    pipe.abort('client reset');
    await waiting;
    expect(pipe.stream.errored).toBeInstanceOf(ExchangeAbortedError);
    expect(pipe.push(Buffer.alloc(100))).toBe(true);
    expect(pipe.needsDrain).toBe(false);
  });

  it('hasContent() waits for the first body byte or the end of the body', async () => {
    const withData = new RequestBody();
    const pending = withData.hasContent();
    withData.push(Buffer.alloc(0));
    expect(withData.contentKnown).toBeUndefined();
    withData.push(Buffer.from('x'));
    expect(await pending).toBe(true);
    expect(await withData.hasContent()).toBe(true);
    expect(withData.contentKnown).toBe(true);

    const empty = new RequestBody();
    const ended = empty.hasContent();
    empty.end();
    expect(await ended).toBe(false);
    expect(await empty.hasContent()).toBe(false);
    expect(empty.contentKnown).toBe(false);

    const reset = new RequestBody();
    const aborted = reset.hasContent();
    reset.abort('client reset');
    expect(await aborted).toBe(false);
    expect(reset.contentKnown).toBe(false);
  });

  it('a stream asked for after the body ended or was aborted shows that end or that error', async () => {
    const ended = new RequestBody();
    ended.end();
    const chunks: Buffer[] = [];
    for await (const chunk of ended.stream) chunks.push(chunk as Buffer);
    expect(chunks).toEqual([]);
    expect(ended.closed).toBe(true);

    const reset = new RequestBody();
    reset.abort('client reset');
    expect(reset.closed).toBe(true);
    expect(reset.push(Buffer.from('late'))).toBe(true);
    expect(reset.stream.destroyed).toBe(true);
    expect(reset.stream.errored).toBeInstanceOf(ExchangeAbortedError);
  });

  it('discard(): what arrives is dropped, never buffered, and counts as content', async () => {
    const before = new RequestBody(4);
    const pending = before.hasContent();
    before.discard();
    for (let i = 0; i < 100; i++) expect(before.push(Buffer.alloc(1024))).toBe(true);
    expect(await pending).toBe(true);
    expect(before.needsDrain).toBe(false);
    before.end();
    expect(before.closed).toBe(true);

    // Discarding a body whose stream exists reads it out.
    const after = new RequestBody(4);
    after.push(Buffer.alloc(8));
    expect(after.needsDrain).toBe(true);
    after.discard();
    await after.drained();
    after.end();
    await new Promise((resolve) => after.stream.once('end', resolve));
  });
});
