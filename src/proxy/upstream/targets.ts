/**
 * The endpoints a pool sends to, from its configured targets. An IP or unix target is one fixed
 * endpoint. A DNS name stands for every address it resolves to, looked up at start and again every
 * resolve interval, so a pool follows a service whose addresses change. A name that stops resolving
 * (an error or no address) keeps the addresses it had: a DNS outage must not take a working pool
 * down with it. It is logged once when it starts failing and once when it resolves again.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { Logger } from 'pino';
import type { UpstreamTarget } from '../config/types.js';

export interface Endpoint {
  /** Unique within a pool: the configured target plus, for a name, the address used. */
  readonly key: string;
  /** For logs, stats and the access log: the target URL, with the address when resolved from a name. */
  readonly label: string;
  readonly target: UpstreamTarget;
  /** The IP address to connect to (tcp targets). */
  readonly address: string | undefined;
}

/** Every address a name resolves to (A and AAAA, as getaddrinfo orders them). */
export type LookupFn = (name: string) => Promise<readonly string[]>;

/** getaddrinfo, as the rest of the system resolves (so /etc/hosts and nsswitch apply). */
export const systemLookup: LookupFn = async (name) => (await dnsLookup(name, { all: true, verbatim: true })).map((a) => a.address);

export interface TargetResolverOptions {
  readonly pool: string;
  readonly intervalMs: number;
  readonly lookup?: LookupFn;
  readonly log?: Logger;
  /** Endpoints appeared or went away (never both empty). */
  readonly onChange: (added: readonly Endpoint[], removed: readonly Endpoint[]) => void;
  /** Every name was looked up once (called once, after the first round's onChange calls). */
  readonly onSettled?: () => void;
}

type NameTarget = Extract<UpstreamTarget, { kind: 'tcp' }>;

export class TargetResolver {
  readonly #names: NameTarget[];
  readonly #fixed: Endpoint[];
  /** Current endpoints per name target (by URL). */
  readonly #resolved = new Map<string, readonly Endpoint[]>();
  /** Names whose last lookup failed (logged once per failure streak). */
  readonly #failing = new Set<string>();
  readonly #lookup: LookupFn;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #settled = false;

  constructor(
    targets: readonly UpstreamTarget[],
    private readonly opts: TargetResolverOptions,
  ) {
    this.#lookup = opts.lookup ?? systemLookup;
    this.#names = targets.filter((t): t is NameTarget => t.kind === 'tcp' && !t.isIp);
    this.#fixed = targets
      .filter((t) => t.kind === 'unix' || t.isIp)
      .map((t) => ({ key: t.url, label: t.url, target: t, address: t.kind === 'tcp' ? t.host : undefined }));
    this.#settled = this.#names.length === 0;
  }

  /** True once every name was looked up at least once (until then, an empty pool is not "down" yet). */
  get settled(): boolean {
    return this.#settled;
  }

  /** Hands over the fixed endpoints at once and starts resolving names. */
  start(): void {
    if (this.#fixed.length > 0) this.opts.onChange(this.#fixed, []);
    if (this.#names.length > 0) void this.#resolveAll();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #resolveAll(): Promise<void> {
    // One round at a time: the next starts an interval after this one ends, so a slow resolver
    // never has lookups piling up.
    await Promise.all(this.#names.map((t) => this.#resolve(t)));
    if (this.#stopped) return;
    if (!this.#settled) {
      this.#settled = true;
      this.opts.onSettled?.();
    }
    this.#timer = setTimeout(() => void this.#resolveAll(), this.opts.intervalMs);
    // Health checks and requests keep a worker alive, not DNS refreshes.
    this.#timer.unref();
  }

  async #resolve(target: NameTarget): Promise<void> {
    let addresses: string[];
    try {
      addresses = [...new Set(await this.#lookup(target.host))].sort();
      if (addresses.length === 0) throw new Error('no address');
    } catch (err) {
      if (this.#stopped) return;
      if (!this.#failing.has(target.url)) {
        this.#failing.add(target.url);
        const kept = this.#resolved.get(target.url)?.map((e) => e.address) ?? [];
        const code = (err as NodeJS.ErrnoException).code;
        this.opts.log?.warn(
          { upstream: this.opts.pool, target: target.url, err: code ?? (err as Error).message, kept },
          kept.length > 0 ? 'upstream name no longer resolves; keeping its last addresses' : 'upstream name does not resolve; it has no address yet',
        );
      }
      return;
    }
    if (this.#stopped) return;
    if (this.#failing.delete(target.url)) this.opts.log?.info({ upstream: this.opts.pool, target: target.url, addresses }, 'upstream name resolves again');
    const before = this.#resolved.get(target.url) ?? [];
    const known = new Set(before.map((e) => e.address));
    const now = new Set(addresses);
    const added = addresses.filter((a) => !known.has(a)).map((a) => endpointFor(target, a));
    const removed = before.filter((e) => !now.has(e.address!));
    if (added.length === 0 && removed.length === 0) return;
    this.#resolved.set(target.url, [...before.filter((e) => now.has(e.address!)), ...added]);
    this.opts.log?.info({ upstream: this.opts.pool, target: target.url, addresses, added: added.map((e) => e.address), removed: removed.map((e) => e.address) }, 'upstream addresses changed');
    this.opts.onChange(added, removed);
  }
}

function endpointFor(target: NameTarget, address: string): Endpoint {
  return { key: `${target.url}#${address}`, label: `${target.url} (${address})`, target, address };
}
