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
 * node:http2's cap on the fields of one header or trailer list (`maxHeaderListPairs`, 128 by
 * default: a stream reset with nothing reported, whatever the list's size), set so that the size
 * alone decides: a field takes at least 33 bytes (a name of one byte), so a list within
 * `maxHeaderBytes` has fewer fields than this. The cap still bounds a list sent before the client
 * acknowledged our SETTINGS (Node applies maxHeaderListSize only after), which our own check
 * refuses once it is read (h2-connection.ts): a list beyond it is over the size as well.
 */
export function maxHeaderListFields(maxHeaderBytes: number): number {
  return Math.floor(maxHeaderBytes / 32);
}
