/**
 * http.max_header_bytes on the TCP protocols, by the measure HTTP/2 and HTTP/3 share: a header or
 * trailer list's size is name + value + 32 per field (RFC 9113 §6.5.2, RFC 9114 §4.2.2), so the
 * same field list gets the same answer whichever protocol brings it.
 */

/** The size of Node's raw [name, value, ...] list. */
export function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) size += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 32;
  return size;
}

/**
 * The most fields Node keeps of one header or trailer list, node:http2 (`maxHeaderListPairs`,
 * 128 by default: a stream reset with nothing reported, whatever the list's size) and node:http
 * (`maxHeadersCount`, 1,000 by default: the rest silently left out of rawHeaders) alike, set so
 * that the size alone decides and Node's memory for a list stays bounded by it. A field takes at
 * least 33 bytes (a name of one byte), and max_header_bytes is at least 1 KiB, so a list within
 * `maxHeaderBytes` has fewer fields than this, and one Node cut at this count is above the size:
 * refused by our own check once it is read (h2-connection.ts before the client acknowledged our
 * SETTINGS, when Node does not apply maxHeaderListSize yet; h1-connection.ts, h1-exchange.ts).
 */
export function maxHeaderListFields(maxHeaderBytes: number): number {
  return Math.floor(maxHeaderBytes / 32);
}
