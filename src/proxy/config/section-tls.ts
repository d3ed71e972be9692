/** `tls:` — certificates by host name, ALPN, and where generated state (self-signed pair, ticket key) lives. */
import { dirname, resolve } from 'node:path';
import { inspectCertificatePair } from './certificate-files.js';
import { describeHostPattern, parseHostPattern } from './names.js';
import type { CertificateConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

const TLS_KEYS = ['certificates', 'alpn', 'state_dir', 'ticket_key_file'] as const;
const CERT_KEYS = ['names', 'cert', 'key', 'default'] as const;
/** The only application protocol this proxy serves; other ALPN ids may be listed beside it. */
export const REQUIRED_ALPN = 'h3';
export const STATE_DIR_DEFAULT = '.udpgrm-proxy';

export interface TlsRead {
  /**
   * Configured certificates, none marked default unless the file says so (`markDefaultCertificate`
   * picks one once every list, top-level and per site, is read); empty → a self-signed one is generated.
   */
  readonly certificates: CertificateConfig[];
  readonly alpn: string[];
  readonly stateDir: string;
  readonly ticketKeyFile: string;
  /** Where to point at when generated state cannot be written. */
  readonly stateDirCursor: Cursor | undefined;
  readonly ticketKeyCursor: Cursor | undefined;
}

/** Relative paths in the config are relative to the config file's directory, not the cwd. */
function pathFrom(configFile: string, p: string): string {
  return resolve(dirname(configFile), p);
}

/**
 * What every certificate list read so far claimed: each name belongs to one certificate and at most
 * one certificate is the default, across `tls.certificates` and every site's `certificates`, because
 * every worker holds all of them (a connection may land on a site it does not belong to).
 */
export class CertificateClaims {
  readonly nameOwner = new Map<string, string>();
  /** Path of the certificate marked `default: true`, if any. */
  defaultAt: string | undefined;
}

export function readTls(section: Cursor | undefined, configFile: string, claims: CertificateClaims): TlsRead {
  const f = section?.fields(TLS_KEYS, 'TLS settings') ?? {};
  const stateDirText = f.state_dir?.string('a directory path');
  const stateDir = pathFrom(configFile, stateDirText ?? STATE_DIR_DEFAULT);
  const ticketText = f.ticket_key_file?.string('a file path');
  const ticketKeyFile = ticketText !== undefined ? pathFrom(configFile, ticketText) : resolve(stateDir, 'ticket.key');
  return {
    certificates: f.certificates === undefined ? [] : readCertificates(f.certificates, configFile, claims),
    alpn: f.alpn === undefined ? [REQUIRED_ALPN] : readAlpn(f.alpn),
    stateDir,
    ticketKeyFile,
    stateDirCursor: f.state_dir,
    ticketKeyCursor: f.ticket_key_file,
  };
}

function readAlpn(c: Cursor): string[] {
  const items = c.oneOrMany() ?? [];
  if (c.isSequence && items.length === 0) c.error(`expected at least one ALPN id, e.g. [${REQUIRED_ALPN}]`);
  const out: string[] = [];
  for (const item of items) {
    const id = item.string('an ALPN protocol id such as "h3"');
    if (id === undefined) continue;
    // RFC 7301 §3.1: 1..255 bytes; we also keep to visible ASCII so logs and messages stay readable.
    if (!/^[\x21-\x7e]{1,255}$/.test(id)) item.error(`expected an ALPN id of 1..255 visible ASCII characters, got ${JSON.stringify(id)}`);
    else if (out.includes(id)) item.error(`duplicate ALPN id "${id}"`);
    else out.push(id);
  }
  if (items.length > 0 && !out.includes(REQUIRED_ALPN) && out.length === items.length) {
    c.error(`alpn must include "${REQUIRED_ALPN}": HTTP/3 is the protocol this proxy serves`);
  }
  return out.length > 0 ? out : [REQUIRED_ALPN];
}

/** A `certificates:` list (under `tls:` or a site), its names and default checked against `claims`. */
export function readCertificates(c: Cursor, configFile: string, claims: CertificateClaims): CertificateConfig[] {
  if (!c.present) return [];
  const items = c.items('a list of certificates { names, cert, key }') ?? [];
  const out: CertificateConfig[] = [];
  const nameOwner = claims.nameOwner;
  for (const item of items) {
    const f = item.fields(CERT_KEYS, 'a certificate { names, cert, key, default }');
    if (f === undefined) continue;
    let ok = true;
    const names: string[] = [];
    if (f.names === undefined || !f.names.present) {
      item.missing(['names'], 'missing "names": expected the host names this certificate serves, e.g. [example.com, "*.example.com"]');
      ok = false;
    } else {
      for (const n of f.names.oneOrMany() ?? []) {
        const pattern = n.parsed((t) => parseHostPattern(t, { allowAny: false, allowIp: false }), 'a host name');
        if (pattern === undefined) {
          ok = false;
          continue;
        }
        const name = describeHostPattern(pattern);
        const owner = nameOwner.get(name);
        if (owner !== undefined) {
          n.error(`"${name}" is already served by ${owner}: each name belongs to one certificate`);
          ok = false;
          continue;
        }
        nameOwner.set(name, item.path);
        names.push(name);
      }
    }
    const certFile = readFilePath(item, f.cert, 'cert', configFile);
    const keyFile = readFilePath(item, f.key, 'key', configFile);
    if (certFile !== undefined && keyFile !== undefined) {
      const problems = inspectCertificatePair(certFile, keyFile);
      if (problems.cert !== undefined) f.cert!.error(problems.cert);
      if (problems.key !== undefined) f.key!.error(problems.key);
      if (problems.cert !== undefined || problems.key !== undefined) ok = false;
    }
    const isDefault = f.default?.boolean() ?? false;
    if (isDefault && claims.defaultAt !== undefined) {
      f.default!.error(`only one certificate can be the default (${claims.defaultAt} already is)`);
      ok = false;
    } else if (isDefault) {
      claims.defaultAt = item.path;
    }
    if (ok && certFile !== undefined && keyFile !== undefined) out.push({ names, certFile, keyFile, selfSigned: false, isDefault });
  }
  return out;
}

/**
 * Without an explicit default, the first of `candidates` (lists in order of preference) answers
 * clients without a matching SNI. Replaces that entry in its list.
 */
export function markDefaultCertificate(claims: CertificateClaims, candidates: readonly CertificateConfig[][]): void {
  if (claims.defaultAt !== undefined) return;
  const list = candidates.find((l) => l.length > 0);
  if (list !== undefined) list[0] = { ...list[0]!, isDefault: true };
}

function readFilePath(item: Cursor, c: Cursor | undefined, key: string, configFile: string): string | undefined {
  if (c === undefined || !c.present) {
    item.missing([key], `missing "${key}": expected the path of a PEM ${key === 'cert' ? 'certificate (chain)' : 'private key'} file`);
    return undefined;
  }
  const text = c.string('a file path');
  return text === undefined ? undefined : pathFrom(configFile, text);
}
