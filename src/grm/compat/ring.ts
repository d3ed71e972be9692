/**
 * Reads grmc_ring through libbpf's ring_buffer. Waiting happens in epoll_wait on libbpf's epoll fd
 * in the libuv threadpool; records are consumed on the main thread (ring_buffer__consume calls the
 * registered callback synchronously), so handlers run like any other event-loop callback.
 * The kernel advances the consumer position after each record: records left when a reader stops
 * (or dies) wait in the pinned ring for the next reader.
 */
import koffi from 'koffi';
import { checkBpf, GrmError } from '../errors.js';
import { bpf, RingSampleFn } from '../libbpf.js';
import { EPOLL_EVENT_BYTES, errno, errnoText, libc } from '../../sys/libc.js';

/** How long one wait may block: bounds how late stop() takes effect. */
const WAIT_MS = 200;
const MAX_FAILED_WAITS = 100;

type State = 'idle' | 'running' | 'stopping' | 'stopped';

export class RingReader {
  private state: State = 'idle';
  private readonly rb: unknown;
  private readonly callback: ReturnType<typeof koffi.register>;
  private loop: Promise<void> | undefined;

  constructor(mapFd: number, onRecord: (data: Uint8Array) => void) {
    // Copy out of the ring before returning: the record's memory is released after the callback.
    this.callback = koffi.register((_ctx: unknown, data: unknown, size: number | bigint) => {
      try {
        const n = Number(size);
        onRecord(new Uint8Array(koffi.view(data, n)).slice());
      } catch {
        /* a handler's failure must not unwind through libbpf */
      }
      return 0;
    }, koffi.pointer(RingSampleFn));
    this.rb = bpf.ringBufferNew(mapFd, this.callback, null, null);
    if (!this.rb) {
      koffi.unregister(this.callback);
      throw new GrmError('SYSCALL', `ring_buffer__new: ${errnoText(errno())}`);
    }
  }

  /** Starts consuming; records already queued are delivered first. */
  start(): void {
    if (this.state !== 'idle') throw new GrmError('BAD_ARGUMENT', `ring reader is ${this.state}`);
    this.state = 'running';
    this.loop = this.run();
  }

  /** Consumes whatever is queued now (synchronously). */
  drain(): number {
    return checkBpf(bpf.ringBufferConsume(this.rb) as number, 'ring_buffer__consume');
  }

  private async run(): Promise<void> {
    const epfd = bpf.ringBufferEpollFd(this.rb) as number;
    const events = Buffer.alloc(EPOLL_EVENT_BYTES);
    let failures = 0;
    while (this.state === 'running') {
      this.drain();
      const n = await new Promise<number>((resolve, reject) => {
        (libc.epoll_wait as unknown as { async: (...a: unknown[]) => void }).async(epfd, events, 1, WAIT_MS, (err: unknown, r: number) =>
          err ? reject(err as Error) : resolve(r),
        );
      });
      // errno of a threadpool call is not readable here; EINTR is the expected failure. A wait
      // that keeps failing at once would spin: give up.
      failures = n < 0 ? failures + 1 : 0;
      if (failures > MAX_FAILED_WAITS) throw new GrmError('SYSCALL', `epoll_wait on the ring failed ${failures} times in a row`);
    }
  }

  /** Stops after the current wait; records still queued stay in the ring. */
  async stop(): Promise<void> {
    if (this.state === 'idle') this.state = 'stopped';
    if (this.state !== 'running') return;
    this.state = 'stopping';
    try {
      await this.loop;
    } finally {
      this.state = 'stopped';
      bpf.ringBufferFree(this.rb);
      koffi.unregister(this.callback);
    }
  }
}
