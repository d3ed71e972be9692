/**
 * The life of one request/response exchange, the same for HTTP/1.1, HTTP/2 and HTTP/3: while
 * open, each direction has its own state (as RFC 9000 §3 models a stream); once finished, nothing
 * the exchange is asked to do has an effect. Each protocol decides when it is finished.
 */

/** What we still take from the client. */
export const enum Recv {
  /** HTTP/3 only: HTTP/1.1 and HTTP/2 exchanges start once Node has parsed the headers. */
  Headers,
  Body,
  /** The body buffer is full: the client is not read (its flow control, or TCP, slows it) until it drains. */
  BodyPaused,
  /** Trailers arrived; the end of the request is still to come (not used by HTTP/1.1, where they come with it). */
  Trailers,
  /** Read to the end, or no longer wanted: late bytes are discarded. */
  Done,
}

/** Where our response stands. */
export const enum Send {
  NotStarted,
  /** Headers are out; body and trailers may follow. */
  Body,
  /** Complete (possibly still flushing to the transport) or abandoned. */
  Done,
}

export type ExchangeState = { readonly phase: 'open'; recv: Recv; send: Send } | { readonly phase: 'finished' };
