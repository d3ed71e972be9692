/**
 * max_request_body, judged the same way by every protocol's exchange: by the length a request
 * declared, else by the body bytes received so far. Returns why it is over (the 413's log
 * reason), or null while within.
 */
export function overBodyLimit(maxBytes: number, received: number, declared?: number): string | null {
  if (declared !== undefined && declared > maxBytes) return `Content-Length ${declared} above max_request_body (${maxBytes} bytes)`;
  return received > maxBytes ? `body above max_request_body (${maxBytes} bytes)` : null;
}
