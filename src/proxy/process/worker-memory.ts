/**
 * How a worker process holds memory: the V8 young generation's size and glibc malloc's thresholds.
 * Both defaults grow under a burst (handshakes, requests) and then keep what they grew to, which
 * idle connections pay for long after the burst (bench/idle-memory.ts measures the parts).
 */
import { libc, M_MMAP_THRESHOLD } from '../../sys/libc.js';

/**
 * V8 flags for the worker processes, put before the master's own execArgv so a flag given to the
 * master (e.g. `node --max-semi-space-size=16 bin/udpgrm-proxy`) still wins.
 *
 * The young generation: V8 grows each of its two semi-spaces up to 16 MiB (64-bit default) when
 * much survives a scavenge, as under a burst of handshakes, and shrinks it only in a
 * memory-reducing GC; a worker then holds 32 MiB of young generation. Capped at 8 MiB (16 MiB for
 * both), scavenges run twice as often; GC pauses grew by ~10-20 µs per 1 KiB request in our
 * measurements, while 4 MiB doubled them and cost req/s (bench/README.md, "idle connections").
 */
/*
 * The memory reducer: when a worker's allocation rate drops (a burst ended, or only a trickle of
 * new connections arrives), V8 runs extra full GCs that shrink the heap, 80-140 ms of CPU each
 * (main thread and marking threads) on a heap of ~16-20 MiB, several times a minute, on top of
 * the GCs allocation itself triggers. Off, a new connection cost ~4-12% less CPU in interleaved
 * runs after a heavy load (bench/README.md, "After: timer wake-ups and the memory reducer").
 */
export const WORKER_V8_FLAGS: readonly string[] = ['--max-semi-space-size=8', '--no-memory-reducer'];

/** glibc's starting value of M_MMAP_THRESHOLD (and of M_TRIM_THRESHOLD, which follows it). */
const MMAP_THRESHOLD_BYTES = 128 * 1024;

/**
 * Freezes glibc's mmap and trim thresholds at their starting values. By default each free of an
 * mmap'ed block (a buffer over 128 KiB, e.g. while V8 compiles at start) raises the mmap
 * threshold to that size and the trim threshold to twice it, up to 32 / 64 MiB: later big blocks
 * come from the heap and the heap's free top is no longer given back. Setting a threshold
 * explicitly turns that adjustment off (mallopt(3)), so freed memory above 128 KiB at the top of
 * the heap returns to the system and big blocks stay mmap'ed.
 */
export function tuneWorkerMalloc(): void {
  if (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) !== 1) throw new Error('mallopt(M_MMAP_THRESHOLD) failed');
}
