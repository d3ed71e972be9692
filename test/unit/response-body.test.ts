import { describe, expect, it } from 'vitest';
import type { FieldList } from '../../src/proxy/http-semantics/fields.js';
import { ResponseBody, type BodySink } from '../../src/proxy/upstream/response-body.js';

/** What the body asked of its upstream (undici's controller in the proxy), in order. */
function upstreamLog(): { calls: string[]; upstream: { pause(): void; resume(): void; cancel(): void } } {
  const calls: string[] = [];
  return { calls, upstream: { pause: () => calls.push('pause'), resume: () => calls.push('resume'), cancel: () => calls.push('cancel') } };
}

/** A sink that records what it got and takes chunks while `accept` says so. */
function recordingSink(accept: () => boolean = () => true): BodySink & { got: string[]; trailers: FieldList | undefined; failure: Error | undefined } {
  const sink = {
    got: [] as string[],
    trailers: undefined as FieldList | undefined,
    failure: undefined as Error | undefined,
    data: (chunk: Buffer): boolean => {
      sink.got.push(chunk.toString());
      return accept();
    },
    end: (t: FieldList): void => {
      sink.trailers = t;
    },
    error: (e: Error): void => {
      sink.failure = e;
    },
  };
  return sink;
}

describe('ResponseBody', () => {
  it('hands what arrived before the consumer attached, in order, then the end with its trailers, synchronously', () => {
    const { calls, upstream } = upstreamLog();
    const body = new ResponseBody(upstream, 1024);
    body.push(Buffer.from('a'));
    body.push(Buffer.from('b'));
    body.end([['x-t', '1']]);
    const sink = recordingSink();
    body.pipe(sink);
    expect(sink.got).toEqual(['a', 'b']);
    expect(sink.trailers).toEqual([['x-t', '1']]);
    expect(calls).toEqual([]);
  });

  it('pauses the upstream once the unread queue reaches the high-water mark', () => {
    const { calls, upstream } = upstreamLog();
    const body = new ResponseBody(upstream, 4);
    body.push(Buffer.from('ab'));
    expect(calls).toEqual([]);
    body.push(Buffer.from('cd'));
    expect(calls).toEqual(['pause']);
    const sink = recordingSink();
    body.pipe(sink);
    expect(sink.got).toEqual(['ab', 'cd']);
    // The queue is empty and the sink wants more: the upstream goes on.
    body.resume();
    expect(calls).toEqual(['pause', 'resume']);
  });

  /** A sink that takes '1' and is then full; '2' and '3' queue, and the third reaches the high-water mark (2). */
  function fullSinkAfterThreeChunks() {
    const { calls, upstream } = upstreamLog();
    const body = new ResponseBody(upstream, 2);
    const room = { now: false };
    const sink = recordingSink(() => room.now);
    body.pipe(sink);
    body.push(Buffer.from('1'));
    body.push(Buffer.from('2'));
    expect(calls).toEqual([]);
    body.push(Buffer.from('3'));
    expect(calls).toEqual(['pause']);
    return { calls, body, sink, room };
  }

  it('a full sink: chunks queue (the upstream paused at the high-water mark) until it resumes, and the end waits behind them', () => {
    const { calls, body, sink, room } = fullSinkAfterThreeChunks();
    body.end([]);
    expect(sink.got).toEqual(['1']);
    expect(sink.trailers).toBeUndefined();
    room.now = true;
    body.resume();
    expect(sink.got).toEqual(['1', '2', '3']);
    expect(sink.trailers).toEqual([]);
    // Ended: nothing to resume upstream.
    expect(calls).toEqual(['pause']);
  });

  it('a sink that resumes below the high-water mark lets the upstream go on', () => {
    const { calls, body, sink, room } = fullSinkAfterThreeChunks();
    room.now = true;
    body.resume();
    expect(sink.got).toEqual(['1', '2', '3']);
    expect(calls).toEqual(['pause', 'resume']);
  });

  it('a failure reaches a paused sink at once and drops what was queued', () => {
    const { upstream } = upstreamLog();
    const body = new ResponseBody(upstream, 1024);
    const sink = recordingSink(() => false);
    body.pipe(sink);
    body.push(Buffer.from('1'));
    body.push(Buffer.from('2'));
    const err = new Error('upstream reset');
    body.fail(err);
    expect(sink.failure).toBe(err);
    body.resume();
    expect(sink.got).toEqual(['1']);
    expect(sink.trailers).toBeUndefined();
  });

  it('cancel before the end cancels the upstream exchange and stops delivery; after the end it does not', () => {
    const open = upstreamLog();
    const body = new ResponseBody(open.upstream, 1024);
    const sink = recordingSink();
    body.pipe(sink);
    body.push(Buffer.from('1'));
    body.cancel();
    body.push(Buffer.from('2'));
    body.end([]);
    expect(open.calls).toEqual(['cancel']);
    expect(sink.got).toEqual(['1']);
    expect(sink.trailers).toBeUndefined();

    const ended = upstreamLog();
    const done = new ResponseBody(ended.upstream, 1024);
    done.end([]);
    done.cancel();
    expect(ended.calls).toEqual([]);
  });

  it('takes one consumer only', () => {
    const body = new ResponseBody(upstreamLog().upstream, 1024);
    body.pipe(recordingSink());
    expect(() => body.pipe(recordingSink())).toThrow(/already has a consumer/);
    expect(() => body.readable).toThrow(/already has a consumer/);
  });

  it('as a Readable: the chunks, the end, a failure as the iterator error, and destroy cancels the upstream', async () => {
    const { calls, upstream } = upstreamLog();
    const body = new ResponseBody(upstream, 1024);
    body.push(Buffer.from('he'));
    body.push(Buffer.from('llo'));
    body.end([]);
    const chunks: Buffer[] = [];
    for await (const c of body.readable) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello');

    const failing = new ResponseBody(upstream, 1024);
    const readable = failing.readable;
    const err = new Error('body timeout');
    setImmediate(() => failing.fail(err));
    await expect(
      (async () => {
        for await (const _ of readable) void _;
      })(),
    ).rejects.toBe(err);

    const destroyed = new ResponseBody(upstream, 1024);
    destroyed.readable.destroy();
    expect(calls.filter((c) => c === 'cancel')).toEqual(['cancel']);
  });
});
