import { describe, expect, it } from 'vitest';
import { Aborter } from '../../src/proxy/abort.js';

describe('Aborter', () => {
  it('runs each listener once, in order, with the first reason; later aborts change nothing', () => {
    const a = new Aborter();
    const calls: string[] = [];
    const removed = (): void => void calls.push('removed');
    a.addEventListener('abort', () => calls.push(`first ${String(a.reason)}`));
    a.addEventListener('abort', removed);
    a.addEventListener('abort', () => calls.push('second'));
    a.removeEventListener('abort', removed);
    expect(a.aborted).toBe(false);
    expect(a.reason).toBeUndefined();
    a.abort('why');
    a.abort('again');
    expect(calls).toEqual(['first why', 'second']);
    expect(a.aborted).toBe(true);
    expect(a.reason).toBe('why');
    a.addEventListener('abort', () => calls.push('late'));
    expect(calls).toEqual(['first why', 'second']);
  });

  it('runs every listener when one throws, then throws the first error', () => {
    const a = new Aborter();
    const ran: number[] = [];
    a.addEventListener('abort', () => {
      ran.push(1);
      throw new Error('one');
    });
    a.addEventListener('abort', () => {
      ran.push(2);
      throw new Error('two');
    });
    a.addEventListener('abort', () => ran.push(3));
    expect(() => a.abort(new Error('reset'))).toThrow('one');
    expect(ran).toEqual([1, 2, 3]);
    expect(a.aborted).toBe(true);
  });
});
