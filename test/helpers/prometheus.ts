/**
 * Parses Prometheus text with the official Python client's parser (Debian's
 * python3-prometheus-client, installed by scripts/setup.sh): it refuses malformed input and keeps
 * the labels of histogram series, which the npm parsers we could use flatten away.
 */
import { spawnSync } from 'node:child_process';

export interface PromSample {
  /** The sample's own name: `x_total`, `x_bucket`, `x_sum`, … */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromFamily {
  readonly name: string;
  readonly type: string;
  readonly samples: readonly PromSample[];
}

const SCRIPT = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = [{"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
       for f in text_string_to_metric_families(sys.stdin.read())]
print(json.dumps(out))
`;

/** Debian's interpreter: the one its python3-prometheus-client package installs into. */
const PYTHON = '/usr/bin/python3';

export function parsePrometheus(text: string): PromFamily[] {
  const r = spawnSync(PYTHON, ['-c', SCRIPT], { input: text, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`prometheus parser refused the text: ${r.stderr || r.error?.message}`);
  return JSON.parse(r.stdout) as PromFamily[];
}

/** Every sample named `name` (e.g. udpgrm_proxy_requests_total) whose labels include `match`. */
export function samples(families: readonly PromFamily[], name: string, match: Readonly<Record<string, string>> = {}): PromSample[] {
  return families.flatMap((f) => f.samples).filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

export function sum(families: readonly PromFamily[], name: string, match: Readonly<Record<string, string>> = {}): number {
  return samples(families, name, match).reduce((n, s) => n + s.value, 0);
}

/** "name{a=1,b=2}" → value of every counter-like sample (names ending _total, _count, _sum, _bucket). */
export function counterValues(families: readonly PromFamily[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of families) {
    if (f.type !== 'counter' && f.type !== 'histogram') continue;
    for (const s of f.samples) {
      if (s.name.endsWith('_created')) continue;
      const labels = Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(',');
      out.set(`${s.name}{${labels}}`, s.value);
    }
  }
  return out;
}
