/**
 * A typed walk over a parsed YAML document that records every problem with its position and goes on,
 * so one load reports all errors. Readers return `undefined` after recording an issue; callers then
 * skip only what depended on that value.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import type { ConfigIssue } from './errors.js';
import { closest, didYouMean } from './suggest.js';
import { parseDuration, parseSize, formatDuration, formatSize, type Parsed } from './units.js';

export class IssueLog {
  readonly issues: ConfigIssue[] = [];

  constructor(
    readonly file: string,
    private readonly lineCounter: LineCounter,
  ) {}

  /** Record a problem at a source offset (undefined: the whole file). */
  add(offset: number | undefined, path: string, message: string): void {
    const pos = offset === undefined ? { line: 0, col: 0 } : this.lineCounter.linePos(offset);
    this.issues.push({ file: this.file, line: pos.line, col: pos.col, path, message });
  }

  sorted(): ConfigIssue[] {
    return [...this.issues].sort((a, b) => a.line - b.line || a.col - b.col);
  }
}

/** A position in the document: a node (maybe absent) plus its path and where to point at. */
export class Cursor {
  private constructor(
    readonly log: IssueLog,
    private readonly doc: Document,
    /** The resolved node; undefined when the key is absent or the node could not be resolved. */
    readonly node: Node | undefined,
    readonly path: string,
    /** Where to report problems: the node's start, or the parent's for absent keys. */
    readonly offset: number,
    /** An issue was already recorded for this node (e.g. a dangling alias): readers stay quiet. */
    private readonly reported: boolean,
  ) {}

  static root(log: IssueLog, doc: Document): Cursor {
    const node = (doc.contents ?? undefined) as Node | undefined;
    return Cursor.at(log, doc, node, '', 0);
  }

  private static at(log: IssueLog, doc: Document, raw: unknown, path: string, fallbackOffset: number): Cursor {
    let node = raw as Node | undefined;
    const offset = node?.range?.[0] ?? fallbackOffset;
    if (node !== undefined && isAlias(node)) {
      const target = node.resolve(doc);
      if (target === undefined) {
        const hint = node.source.startsWith('.') ? ` (a name starting with '*' must be quoted: "*${node.source}")` : '';
        log.add(offset, path, `unknown YAML alias "*${node.source}"${hint}`);
        return new Cursor(log, doc, undefined, path, offset, true);
      }
      node = target as Node;
    }
    return new Cursor(log, doc, node, path, offset, false);
  }

  /** Unknown keys `fields()` reported here. */
  private readonly unknownKeys: string[] = [];

  /**
   * Report missing required key(s), unless an unknown key here looks like a misspelling of one of
   * them: that was already reported with a "did you mean".
   */
  missing(keys: readonly string[], message: string): void {
    if (!this.unknownKeys.some((u) => closest(u, keys) !== undefined)) this.error(message);
  }

  /** Present and not an empty value (`key:` with nothing after it). */
  get present(): boolean {
    return this.node !== undefined && !(isScalar(this.node) && this.node.value === null);
  }

  get isSequence(): boolean {
    return this.node !== undefined && isSeq(this.node);
  }

  get isMapping(): boolean {
    return this.node !== undefined && isMap(this.node);
  }

  get scalar(): unknown {
    return this.node !== undefined && isScalar(this.node) ? this.node.value : undefined;
  }

  error(message: string): void {
    if (!this.reported) this.log.add(this.offset, this.path, message);
  }

  expected(what: string): void {
    this.error(`expected ${what}, got ${this.describe()}`);
  }

  private describe(): string {
    const node = this.node;
    if (node === undefined) return 'nothing';
    if (isMap(node)) return 'a mapping';
    if (isSeq(node)) return 'a list';
    if (isScalar(node)) {
      const v = node.value;
      if (v === null) return 'nothing';
      if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
      return String(v);
    }
    return 'something else';
  }

  /**
   * The keys of a mapping, checked against `known` (unknown keys are errors with a "did you mean").
   * Absent/empty value → an empty record (optional sections). Values keep their order of appearance.
   */
  fields<K extends string>(known: readonly K[], what = 'a mapping'): Partial<Record<K, Cursor>> | undefined {
    if (!this.present) return {};
    const node = this.node;
    if (node === undefined || !isMap(node)) {
      this.expected(`${what} with keys ${known.join(', ')}`);
      return undefined;
    }
    const out: Partial<Record<K, Cursor>> = {};
    for (const pair of node.items) {
      const keyNode = pair.key as Node | undefined;
      const key = keyNode !== undefined && isScalar(keyNode) ? keyNode.value : undefined;
      const keyOffset = keyNode?.range?.[0] ?? this.offset;
      if (typeof key !== 'string') {
        this.log.add(keyOffset, this.path, `expected a plain key (one of ${known.join(', ')})`);
        continue;
      }
      const childPath = joinKey(this.path, key);
      if (!(known as readonly string[]).includes(key)) {
        this.log.add(keyOffset, childPath, `unknown key "${key}"${didYouMean(key, known)} (expected one of ${known.join(', ')})`);
        this.unknownKeys.push(key);
        continue;
      }
      out[key as K] = Cursor.at(this.log, this.doc, pair.value, childPath, keyOffset);
    }
    return out;
  }

  /** Every key/value of a mapping whose keys are names chosen by the user (upstream pools, headers). */
  entries(what: string): Array<[string, Cursor, number]> | undefined {
    if (!this.present) return [];
    const node = this.node;
    if (node === undefined || !isMap(node)) {
      this.expected(what);
      return undefined;
    }
    const out: Array<[string, Cursor, number]> = [];
    for (const pair of node.items) {
      const keyNode = pair.key as Node | undefined;
      const key = keyNode !== undefined && isScalar(keyNode) ? keyNode.value : undefined;
      const keyOffset = keyNode?.range?.[0] ?? this.offset;
      if (typeof key !== 'string' && typeof key !== 'number') {
        this.log.add(keyOffset, this.path, `expected a name as key`);
        continue;
      }
      out.push([String(key), Cursor.at(this.log, this.doc, pair.value, joinKey(this.path, String(key)), keyOffset), keyOffset]);
    }
    return out;
  }

  /** Items of a list. */
  items(what = 'a list'): Cursor[] | undefined {
    const node = this.node;
    if (node === undefined || !isSeq(node)) {
      this.expected(what);
      return undefined;
    }
    return node.items.map((item, i) => Cursor.at(this.log, this.doc, item, `${this.path}[${i}]`, this.offset));
  }

  /** A list, or a single value standing for a list of one (`host: a.com` = `host: [a.com]`). */
  oneOrMany(): Cursor[] | undefined {
    return this.isSequence ? this.items() : [this];
  }

  string(what = 'a string', options: { readonly numbersToo?: boolean } = {}): string | undefined {
    const v = this.scalar;
    if (typeof v === 'string') return v;
    if (options.numbersToo === true && typeof v === 'number') {
      // Keep the author's spelling ("1.0" stays "1.0") rather than JS's number formatting.
      const source = (this.node as { source?: unknown }).source;
      return typeof source === 'string' ? source : String(v);
    }
    this.expected(what);
    return undefined;
  }

  boolean(): boolean | undefined {
    const v = this.scalar;
    if (typeof v === 'boolean') return v;
    this.expected('true or false');
    return undefined;
  }

  integer(min: number, max: number, what = 'an integer'): number | undefined {
    const v = this.scalar;
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      this.expected(`${what} (${min}..${max})`);
      return undefined;
    }
    if (v < min || v > max) {
      this.error(`${what} must be between ${min} and ${max}, got ${v}`);
      return undefined;
    }
    return v;
  }

  oneOf<T extends string>(values: readonly T[]): T | undefined {
    const v = this.scalar;
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
    const hint = typeof v === 'string' ? didYouMean(v, values) : '';
    this.error(`expected one of ${values.map((x) => JSON.stringify(x)).join(', ')}, got ${this.describe()}${hint}`);
    return undefined;
  }

  /** A duration in milliseconds within [minMs, maxMs]. */
  duration(minMs: number, maxMs: number): number | undefined {
    return this.ranged(parseDuration(this.scalarOrNode()), minMs, maxMs, formatDuration);
  }

  /** A size in bytes within [min, max]. */
  size(min: number, max: number): number | undefined {
    return this.ranged(parseSize(this.scalarOrNode()), min, max, formatSize);
  }

  /** A size in bytes within [min, max], or `none` (null): no limit. */
  sizeOrNone(min: number, max: number): number | null | undefined {
    if (this.scalar === 'none') return null;
    const size = parseSize(this.scalarOrNode());
    return this.ranged(size.ok ? size : { ok: false, expected: `${size.expected} or "none"` }, min, max, formatSize);
  }

  /** Parse the string value with a grammar from names.ts, reporting what it expected. */
  parsed<T>(parse: (text: string) => Parsed<T>, what: string): T | undefined {
    const text = this.string(what);
    if (text === undefined) return undefined;
    const result = parse(text);
    if (result.ok) return result.value;
    this.error(`expected ${result.expected}, got ${this.describe()}`);
    return undefined;
  }

  private scalarOrNode(): unknown {
    return this.node !== undefined && isScalar(this.node) ? this.node.value : this.node;
  }

  private ranged(result: Parsed<number>, min: number, max: number, show: (n: number) => string): number | undefined {
    if (!result.ok) {
      this.expected(result.expected);
      return undefined;
    }
    if (result.value < min || result.value > max) {
      this.error(`must be between ${show(min)} and ${show(max)}, got ${this.describe()}`);
      return undefined;
    }
    return result.value;
  }
}

function joinKey(path: string, key: string): string {
  const segment = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key);
  if (path === '') return segment.startsWith('"') ? `[${segment}]` : segment;
  return segment.startsWith('"') ? `${path}[${segment}]` : `${path}.${segment}`;
}
