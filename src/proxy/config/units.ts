/**
 * Durations and sizes as people write them in proxy.yaml.
 *
 * Durations: "500ms", "30s", "2m", "1h", combinations like "1m30s", fractions like "1.5s"; a plain
 * YAML number means SECONDS (as in Caddy's and nginx's habits: `drain_timeout: 30`). Results are whole
 * milliseconds (rounded).
 * Sizes: "1200", "64KiB", "4MiB", "1GiB" (powers of 1024) and "1KB", "1MB", "1GB" (powers of 1000),
 * units case-insensitive, optional space; a plain YAML number means BYTES. Results must be whole bytes.
 */

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly expected: string };

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
export const DURATION_EXAMPLE = 'a duration like "500ms", "30s", "2m", "1m30s" or a number of seconds';

export function parseDuration(input: unknown): Parsed<number> {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return { ok: false, expected: `${DURATION_EXAMPLE} (not negative)` };
    return { ok: true, value: Math.round(input * 1000) };
  }
  if (typeof input !== 'string') return { ok: false, expected: DURATION_EXAMPLE };
  const text = input.trim();
  if (text === '') return { ok: false, expected: DURATION_EXAMPLE };
  let total = 0;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < text.length) {
    const match = DURATION_PART.exec(text);
    if (match === null) return { ok: false, expected: DURATION_EXAMPLE };
    total += Number(match[1]) * DURATION_UNITS_MS[match[2]!]!;
  }
  return { ok: true, value: Math.round(total) };
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};
const SIZE = /^(\d+(?:\.\d+)?)\s*([a-z]+)?$/i;
export const SIZE_EXAMPLE = 'a size like "1200", "64KiB", "4MiB" or "1MB"';

export function parseSize(input: unknown): Parsed<number> {
  let bytes: number;
  if (typeof input === 'number') {
    bytes = input;
  } else if (typeof input === 'string') {
    const match = SIZE.exec(input.trim());
    if (match === null) return { ok: false, expected: SIZE_EXAMPLE };
    const unit = (match[2] ?? 'b').toLowerCase();
    const factor = SIZE_UNITS[unit];
    if (factor === undefined) return { ok: false, expected: `${SIZE_EXAMPLE} (units: B, KB, MB, GB, KiB, MiB, GiB)` };
    bytes = Number(match[1]) * factor;
  } else {
    return { ok: false, expected: SIZE_EXAMPLE };
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) return { ok: false, expected: `${SIZE_EXAMPLE} (a whole number of bytes)` };
  return { ok: true, value: bytes };
}

/** "30000" ms → "30s", for summaries and range messages. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export function formatSize(bytes: number): string {
  for (const [unit, factor] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}`;
}
