/**
 * Removes `100 Continue` responses from an HTTP/1.1 upstream's byte stream before undici parses it.
 * undici destroys the connection on any 100 ("bad response", client-h1.js onHeadersComplete), but a
 * client must parse and may ignore a 1xx it did not expect (RFC 9110 §15.2). We never send
 * `Expect: 100-continue` upstream (translate.ts drops it, undici refuses it), so every 100 we see
 * is unsolicited and tells us nothing.
 *
 * A 100 may only be removed where a response begins. To know where that is, the filter follows
 * the response framing of RFC 9112 §6.3 as strictly as undici's parser does: a status line and
 * fields up to the empty line, then no content (1xx, 204, 304), a Content-Length body, or a chunked
 * body with its trailer section. On anything it does not fully understand (a body delimited by
 * the connection close, Transfer-Encoding other than a lone "chunked", differing Content-Length
 * values, a bare CR or LF, obs-fold, a 101, a head over 64 KiB) it steps aside for the rest of the
 * connection: every byte passes untouched and undici judges it. So it never drops a byte inside a
 * message, only whole 100 heads at message boundaries.
 *
 * The response to HEAD has no content whatever its Content-Length says, and the filter cannot see
 * the method; undici closes the connection after a HEAD request (client-h1.js writeH1, kReset), so
 * the filter's wrong idea of that body is never used.
 */

const MAX_HEAD = 64 * 1024;
const MAX_LINE = 8 * 1024;
const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
/** What a 100 status line starts with ('x' stands for the HTTP minor version, 0 or 1). */
const CONTINUE_PREFIX = 'HTTP/1.x 100';
const FIELD_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([^\r\n]*?)[\t ]*$/;
/** tchar of RFC 9110 §5.6.2, by byte: what a field name is made of. */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TOKEN[c.charCodeAt(0)] = 1;
const CONTENT_LENGTH = Buffer.from('content-length', 'latin1');
const TRANSFER_ENCODING = Buffer.from('transfer-encoding', 'latin1');
const HTTP_1_PREFIX = Buffer.from('HTTP/1.', 'latin1');
const CHUNK_SIZE_LINE = /^([0-9A-Fa-f]{1,12})[\t ]*(?:;[^\r\n]*)?$/;

type Mode =
  /** At a response boundary: reading a status line and fields. */
  | { readonly kind: 'head' }
  /** Inside a content-length body, or the data of one chunk. */
  | { readonly kind: 'body'; remaining: number; readonly chunked: boolean }
  /** Reading a line of a chunked body: a chunk size, the CRLF after chunk data, or a trailer line. */
  | { readonly kind: 'line'; readonly line: 'size' | 'data-end' | 'trailer' }
  /** Stepped aside: everything passes, nothing is looked at. */
  | { readonly kind: 'opaque' };

export class InterimResponseFilter {
  #mode: Mode = { kind: 'head' };
  /** The head being read (held back while it may be a 100). */
  #head: Buffer = EMPTY;
  /** Bytes of #head already passed on (all of it once it cannot be a 100). */
  #headPassed = 0;
  /** The current chunked-body line, for parsing (its bytes pass on as they come). */
  #line = '';
  #dropped = 0;

  /** How many 100 responses were removed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** True once the filter stepped aside for good. */
  get opaque(): boolean {
    return this.#mode.kind === 'opaque';
  }

  /** Bytes received from the upstream → the bytes to hand to the HTTP parser (possibly none). */
  push(chunk: Buffer): Buffer {
    if (this.opaque) return chunk;
    const out: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.opaque) {
        out.push(chunk.subarray(at));
        break;
      }
      at = this.#step(chunk, at, out);
    }
    return out.length === 1 ? out[0]! : coversWhole(out, chunk) ? chunk : Buffer.concat(out);
  }

  /** The connection ended: what is still held (the start of a 100 head) goes on, for undici to judge. */
  end(): Buffer {
    const held = this.#head.subarray(this.#headPassed);
    this.#head = EMPTY;
    this.#headPassed = 0;
    this.#mode = { kind: 'opaque' };
    return held;
  }

  #step(chunk: Buffer, at: number, out: Buffer[]): number {
    const mode = this.#mode;
    switch (mode.kind) {
      case 'head':
        return this.#readHead(chunk, at, out);
      case 'body': {
        const take = Math.min(mode.remaining, chunk.length - at);
        out.push(chunk.subarray(at, at + take));
        mode.remaining -= take;
        if (mode.remaining === 0) this.#mode = mode.chunked ? { kind: 'line', line: 'data-end' } : { kind: 'head' };
        return at + take;
      }
      case 'line':
        return this.#readLine(mode.line, chunk, at, out);
      case 'opaque':
        out.push(chunk.subarray(at));
        return chunk.length;
    }
  }

  #readHead(chunk: Buffer, at: number, out: Buffer[]): number {
    const before = this.#head.length;
    // Usually the whole head is in one read: no copy then.
    this.#head = before === 0 ? chunk.subarray(at) : Buffer.concat([this.#head, chunk.subarray(at)]);
    // Search from where an end marker split across reads could start.
    const end = this.#head.indexOf(HEAD_END, Math.max(0, before - 3));
    const headLength = end < 0 ? this.#head.length : end + HEAD_END.length;
    const consumed = headLength - before;
    if (end >= 0) this.#head = this.#head.subarray(0, headLength);

    if (this.#head.length > MAX_HEAD) {
      this.#stepAside(out);
      return at + consumed;
    }
    if (!this.#mayBeContinue()) this.#passHead(out);
    if (end < 0) return chunk.length;

    const next = afterHead(this.#head, end);
    if (next === 'drop') {
      this.#dropped++;
    } else {
      this.#passHead(out);
      this.#mode = next;
    }
    this.#head = EMPTY;
    this.#headPassed = 0;
    return at + consumed;
  }

  /** Could the head read so far be a 100 (status line "HTTP/1.x 100" then SP or CR)? */
  #mayBeContinue(): boolean {
    const head = this.#head;
    const n = Math.min(head.length, CONTINUE_PREFIX.length);
    for (let i = 0; i < n; i++) {
      const c = head[i]!;
      const ok = i === 7 ? c === 0x30 || c === 0x31 : c === CONTINUE_PREFIX.charCodeAt(i);
      if (!ok) return false;
    }
    if (head.length > CONTINUE_PREFIX.length) {
      const c = head[CONTINUE_PREFIX.length]!;
      return c === 0x20 || c === 0x0d;
    }
    return true;
  }

  #passHead(out: Buffer[]): void {
    if (this.#headPassed < this.#head.length) out.push(this.#head.subarray(this.#headPassed));
    this.#headPassed = this.#head.length;
  }

  #stepAside(out: Buffer[]): void {
    this.#passHead(out);
    this.#head = EMPTY;
    this.#headPassed = 0;
    this.#mode = { kind: 'opaque' };
  }

  /** A line of a chunked body (RFC 9112 §7.1): passed on at once, parsed when complete. */
  #readLine(line: 'size' | 'data-end' | 'trailer', chunk: Buffer, at: number, out: Buffer[]): number {
    const lf = chunk.indexOf(0x0a, at);
    const stop = lf < 0 ? chunk.length : lf + 1;
    out.push(chunk.subarray(at, stop));
    this.#line += chunk.toString('latin1', at, stop);
    if (this.#line.length > MAX_LINE) {
      this.#mode = { kind: 'opaque' };
      return stop;
    }
    if (lf < 0) return stop;
    const text = this.#line;
    this.#line = '';
    if (!text.endsWith('\r\n') || text.indexOf('\r') !== text.length - CRLF.length) {
      this.#mode = { kind: 'opaque' };
      return stop;
    }
    const content = text.slice(0, -CRLF.length);
    this.#mode = this.#afterLine(line, content);
    return stop;
  }

  #afterLine(line: 'size' | 'data-end' | 'trailer', content: string): Mode {
    switch (line) {
      case 'data-end':
        return content === '' ? { kind: 'line', line: 'size' } : { kind: 'opaque' };
      case 'trailer':
        if (content === '') return { kind: 'head' };
        return FIELD_LINE.test(content) ? { kind: 'line', line: 'trailer' } : { kind: 'opaque' };
      case 'size': {
        const size = CHUNK_SIZE_LINE.exec(content);
        if (size === null) return { kind: 'opaque' };
        const n = parseInt(size[1]!, 16);
        return n === 0 ? { kind: 'line', line: 'trailer' } : { kind: 'body', remaining: n, chunked: true };
      }
    }
  }
}

/**
 * What follows a complete head, `head[0, end)` without its final CRLFCRLF: drop it (a 100), or the
 * body framing. Read byte by byte, without making a string of the head or splitting it (this runs
 * once per response): a status line `HTTP/1.x DDD[ reason]`, then field lines `token: value`,
 * separated by CRLF. A bare CR or LF, obs-fold or any other line that is not a field: opaque.
 */
export function afterHead(head: Buffer, end: number): 'drop' | Mode {
  const opaque: Mode = { kind: 'opaque' };
  let lineEnd = lineEndAt(head, 0, end);
  if (lineEnd < 0) return opaque;
  const code = statusCode(head, lineEnd);
  if (code < 0) return opaque;
  let lengths: string[] | undefined;
  let codings: string[] | undefined;
  while (lineEnd < end) {
    const start = lineEnd + CRLF.length;
    lineEnd = lineEndAt(head, start, end);
    if (lineEnd < 0) return opaque;
    let colon = start;
    while (colon < lineEnd && TOKEN[head[colon]!] === 1) colon++;
    if (colon === start || colon === lineEnd || head[colon] !== 0x3a) return opaque;
    const nameLength = colon - start;
    const isLength = nameLength === CONTENT_LENGTH.length && namedAs(head, start, CONTENT_LENGTH);
    if (!isLength && !(nameLength === TRANSFER_ENCODING.length && namedAs(head, start, TRANSFER_ENCODING))) continue;
    let valueStart = colon + 1;
    let valueEnd = lineEnd;
    while (valueStart < valueEnd && (head[valueStart] === 0x20 || head[valueStart] === 0x09)) valueStart++;
    while (valueEnd > valueStart && (head[valueEnd - 1] === 0x20 || head[valueEnd - 1] === 0x09)) valueEnd--;
    const value = head.toString('latin1', valueStart, valueEnd);
    if (isLength) (lengths ??= []).push(value);
    else (codings ??= []).push(value);
  }
  if (code === 100) return 'drop';
  // 101 switches protocols: what follows is not HTTP/1.1 (undici refuses it anyway).
  if (code === 101 || code < 100 || code > 599) return opaque;
  if (code < 200 || code === 204 || code === 304) return { kind: 'head' };
  if (codings !== undefined) {
    if (codings.length !== 1 || codings[0]!.toLowerCase() !== 'chunked' || lengths !== undefined) return opaque;
    return { kind: 'line', line: 'size' };
  }
  if (lengths === undefined) return opaque; // delimited by the connection close
  if (!lengths.every((v) => v === lengths[0] && /^\d{1,15}$/.test(v))) return opaque;
  const length = Number(lengths[0]);
  return length === 0 ? { kind: 'head' } : { kind: 'body', remaining: length, chunked: false };
}

/**
 * Where the line starting at `start` ends: `end`, or a CR followed by LF before it. -1 for a bare
 * CR or LF (the head's own end is followed by CRLFCRLF, so a CR just before it is a bare one).
 */
function lineEndAt(head: Buffer, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    const c = head[i]!;
    if (c === 0x0a) return -1;
    if (c === 0x0d) return head[i + 1] === 0x0a && i + 1 < end ? i : -1;
  }
  return end;
}

/** The status code of `HTTP/1.0|1 DDD[ reason]` in `head[0, lineEnd)` (RFC 9112 §4), or -1. */
function statusCode(head: Buffer, lineEnd: number): number {
  const prefix = HTTP_1_PREFIX.length;
  if (lineEnd < prefix + 5 || head.compare(HTTP_1_PREFIX, 0, prefix, 0, prefix) !== 0) return -1;
  const minor = head[prefix]!;
  if ((minor !== 0x30 && minor !== 0x31) || head[prefix + 1] !== 0x20) return -1;
  let code = 0;
  for (let i = prefix + 2; i < prefix + 5; i++) {
    const d = head[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    code = code * 10 + d;
  }
  if (lineEnd === prefix + 5) return code;
  if (head[prefix + 5] !== 0x20) return -1;
  // The reason phrase: HTAB, SP, VCHAR, obs-text.
  for (let i = prefix + 6; i < lineEnd; i++) {
    const c = head[i]!;
    if (c !== 0x09 && (c < 0x20 || c === 0x7f)) return -1;
  }
  return code;
}

/** Whether the field name at `start` is `lower` (lowercase letters and '-'), in any case. */
function namedAs(head: Buffer, start: number, lower: Buffer): boolean {
  for (let i = 0; i < lower.length; i++) if ((head[start + i]! | 0x20) !== lower[i]) return false;
  return true;
}

/**
 * True when `parts` are `chunk`'s bytes in order, end to end (a head and its body read together,
 * nothing dropped): `chunk` itself can go on, without Buffer.concat's copy of every response.
 */
function coversWhole(parts: readonly Buffer[], chunk: Buffer): boolean {
  let at = chunk.byteOffset;
  for (const p of parts) {
    if (p.buffer !== chunk.buffer || p.byteOffset !== at) return false;
    at += p.length;
  }
  return at === chunk.byteOffset + chunk.length;
}
