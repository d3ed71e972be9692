/**
 * Alt-Svc advertisement (RFC 7838): every response on a listener whose config sets `alt_svc`
 * carries exactly our value, whatever the upstream or a respond route said (an origin behind us
 * cannot know which alternative services this edge offers). HTTP/3 responses carry it too
 * (RFC 9114 §3.1.1). Each protocol layer (h1, h2, h3) adds the field where it writes a response
 * head (`withListenerAltSvc`), so the answers it makes before or without the handler (400, 408,
 * 431, 501) carry it too.
 */
import type { FieldList } from '../http-semantics/index.js';

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
