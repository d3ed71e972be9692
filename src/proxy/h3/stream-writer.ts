/**
 * Outgoing bytes of one QUIC stream, bounded by QUIC flow control. Chunks that do not fit stay
 * queued until the stream is writable again; `write` returns false above the high-water mark so
 * the producer (an upstream body) pauses instead of buffering the whole response.
 */
import type { QuicStreams } from '../quic/connection.js';

const HIGH_WATER_MARK = 256 * 1024;
const EMPTY = Buffer.alloc(0);

export class StreamWriter {
  private queue: Buffer[] = [];
  private queued = 0;
  private finQueued = false;
  private finSent = false;
  private drainWaiters: Array<() => void> = [];
  /** Set once the stream can no longer be written (peer STOP_SENDING, reset, connection gone). */
  failed = false;

  constructor(
    private readonly conn: QuicStreams,
    readonly streamId: number,
    /** Called once when the stream turns out to be unwritable (STOP_SENDING, reset). */
    private readonly onFail?: () => void,
  ) {}

  /** True while bytes wait for flow-control credit. */
  get blocked(): boolean {
    return this.queue.length > 0 || (this.finQueued && !this.finSent);
  }

  get finished(): boolean {
    return this.finSent;
  }

  /** Queues `data` (and FIN when `fin`); returns false when the caller should wait for `drained()`. */
  write(data: Buffer, fin = false): boolean {
    if (this.failed || this.finQueued) return false;
    if (data.length > 0) {
      this.queue.push(data);
      this.queued += data.length;
    }
    if (fin) this.finQueued = true;
    this.flush();
    return this.queued < HIGH_WATER_MARK;
  }

  end(): void {
    this.write(EMPTY, true);
  }

  /** Resolves when the queue is below the high-water mark again (or the stream failed). */
  drained(): Promise<void> {
    if (this.queued < HIGH_WATER_MARK || this.failed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Pushes queued bytes into QUIC; called on write and when QUIC reports the stream writable.
   * Returns true when QUIC took nothing although bytes were waiting (no credit at all).
   */
  flush(): boolean {
    if (this.failed) return false;
    let starved = false;
    try {
      while (this.queue.length > 0) {
        const head = this.queue[0]!;
        const last = this.queue.length === 1;
        const n = this.conn.streamSend(this.streamId, head, last && this.finQueued);
        if (n === null) {
          // No flow-control credit: wait for writability.
          starved = true;
          break;
        }
        this.queued -= n;
        if (n < head.length) {
          this.queue[0] = head.subarray(n);
          break;
        }
        this.queue.shift();
        if (last && this.finQueued) this.finSent = true;
      }
      if (this.queue.length === 0 && this.finQueued && !this.finSent) {
        if (this.conn.streamSend(this.streamId, EMPTY, true) !== null) this.finSent = true;
      }
    } catch {
      this.fail();
      this.onFail?.();
      return false;
    }
    if (this.queued < HIGH_WATER_MARK) this.wakeWaiters();
    return starved;
  }

  /** The stream cannot be written any more: drop the queue and release waiting producers. */
  fail(): void {
    this.failed = true;
    this.queue = [];
    this.queued = 0;
    this.wakeWaiters();
  }

  private wakeWaiters(): void {
    const waiters = this.drainWaiters;
    if (waiters.length === 0) return;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }
}
