/**
 * How a worker process holds memory: glibc malloc's thresholds. Its defaults grow under a burst
 * and then keep what they grew to, which idle connections pay for long after the burst
 * (bench/idle-memory.ts measures the parts).
 */
import { libc, M_MMAP_THRESHOLD } from '../../sys/libc.js';

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
