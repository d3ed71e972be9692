/**
 * Alt-Svc advertisement (RFC 7838): every response on a listener whose config sets `alt_svc`
 * carries exactly our value, whatever the upstream or a respond route said (an origin behind us
 * cannot know which alternative services this edge offers). HTTP/3 responses carry it too
 * (RFC 9114 §3.1.1). HTTP/3 wraps its request handler (`advertiseAltSvc`); the TCP listeners
 * add the field where their protocol layer writes a response head (`withListenerAltSvc`), so the
 * answers it makes before or without the handler (400, 408, 431, 501) carry it too.
 */
import type { FieldList } from '../http-semantics/index.js';
import type { HttpExchange, RequestHandler } from './exchange.js';

/** `headers` without any alt-svc field, plus ours. */
export function withAltSvcField(headers: FieldList, altSvc: string): FieldList {
  const out: FieldList = headers.filter(([name]) => name.toLowerCase() !== 'alt-svc');
  out.push(['alt-svc', altSvc]);
  return out;
}

/** `withAltSvcField`, or `headers` unchanged when the listener advertises nothing (alt_svc: off). */
export function withListenerAltSvc(headers: FieldList, altSvc: string | undefined): FieldList {
  return altSvc === undefined ? headers : withAltSvcField(headers, altSvc);
}

/** The handler, with every response it starts carrying `alt-svc: value`; the handler itself when there is no value. */
export function advertiseAltSvc(handler: RequestHandler, altSvc: string | undefined): RequestHandler {
  if (altSvc === undefined) return handler;
  return { handle: (ex) => handler.handle(new AltSvcExchange(ex, altSvc)) };
}

/** The exchange as the handler sees it: everything passes through; respond() sets Alt-Svc. */
class AltSvcExchange implements HttpExchange {
  constructor(
    private readonly inner: HttpExchange,
    private readonly altSvc: string,
  ) {}

  get protocol() {
    return this.inner.protocol;
  }
  get httpVersion() {
    return this.inner.httpVersion;
  }
  get request() {
    return this.inner.request;
  }
  get body() {
    return this.inner.body;
  }
  get client() {
    return this.inner.client;
  }
  get connectionId() {
    return this.inner.connectionId;
  }
  get streamId() {
    return this.inner.streamId;
  }
  get signal() {
    return this.inner.signal;
  }
  get headersSent() {
    return this.inner.headersSent;
  }
  get bytesReceived() {
    return this.inner.bytesReceived;
  }
  get bytesSent() {
    return this.inner.bytesSent;
  }
  get earlyData() {
    return this.inner.earlyData;
  }
  handshakeComplete(): Promise<boolean> {
    return this.inner.handshakeComplete();
  }
  respond(status: number, headers: FieldList, endStream?: boolean): void {
    this.inner.respond(status, withAltSvcField(headers, this.altSvc), endStream);
  }
  write(chunk: Buffer): boolean {
    return this.inner.write(chunk);
  }
  drained(): Promise<void> {
    return this.inner.drained();
  }
  end(trailers?: FieldList): void {
    this.inner.end(trailers);
  }
  reset(): void {
    this.inner.reset();
  }
}
