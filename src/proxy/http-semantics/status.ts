/** Status-code rules shared by the upstream client and the response path (RFC 9110 §15, §6.4.1). */

/** RFC 9110 §15: a status code is three digits whose first is 1 to 5. */
export function isValidStatus(status: number): boolean {
  return Number.isInteger(status) && status >= 100 && status <= 599;
}

/**
 * A response with this status never has content (RFC 9110 §6.4.1, RFC 9112 §6.3): 1xx, 204, 304.
 * Its message ends with the header section whatever Content-Length says.
 */
export function statusHasNoContent(status: number): boolean {
  return (status >= 100 && status < 200) || status === 204 || status === 304;
}

/** The response to this request ends with its header section: HEAD, or a status without content. */
export function responseHasNoContent(method: string, status: number): boolean {
  return method === 'HEAD' || statusHasNoContent(status);
}

/**
 * RFC 9110 §8.6: a server MUST NOT send Content-Length in a 1xx or 204 response. (A 304, or the
 * response to HEAD, may carry the length the representation would have: it is kept.)
 */
export function statusForbidsContentLength(status: number): boolean {
  return (status >= 100 && status < 200) || status === 204;
}
