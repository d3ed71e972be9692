/**
 * Files the proxy keeps in its state directory: the self-signed certificate used when no
 * certificate is configured, and the session ticket key shared by every worker and generation
 * (so a ticket issued before a reload still resumes after it).
 *
 * Self-signed pairs come from the `openssl` CLI (installed by setup): no npm dependency for a
 * one-off operation, and the same tool an operator would use to inspect the result.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { secretFileProblem } from './file-trust.js';
import { canonicalIp } from './names.js';

/**
 * BoringSSL's SSL_CTX_set_tlsext_ticket_keys (behind quiche's `set_ticket_key`) takes exactly 48
 * bytes: 16-byte key name, 16-byte HMAC secret, 16-byte AES-128 key.
 */
export const TICKET_KEY_BYTES = 48;
/** Regenerate a self-signed certificate that expires within this many days. */
const RENEW_BEFORE_DAYS = 30;
const VALID_DAYS = 365;

export interface SelfSignedPlan {
  readonly certFile: string;
  readonly keyFile: string;
  /** DNS names and IP addresses the certificate must cover. */
  readonly names: readonly string[];
}

export function selfSignedPlan(stateDir: string, names: readonly string[]): SelfSignedPlan {
  return { certFile: join(stateDir, 'self-signed.crt'), keyFile: join(stateDir, 'self-signed.key'), names };
}

/**
 * Why the existing pair cannot be reused, or undefined when it can. A key that is not a private
 * file of ours may have been planted or read by someone else: the pair is ours to make, so such a
 * key is a reason to regenerate it (the rename replaces the file or symlink, never its target).
 */
export function selfSignedProblem(plan: SelfSignedPlan, now = new Date()): string | undefined {
  const keyProblem = secretFileProblem(plan.keyFile);
  if (keyProblem === 'missing') return 'missing';
  if (keyProblem !== undefined) return `key ${plan.keyFile} ${keyProblem}`;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(plan.certFile));
    const key = createPrivateKey(readFileSync(plan.keyFile));
    if (!cert.checkPrivateKey(key)) return 'key does not match certificate';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `unreadable (${(err as Error).message})`;
  }
  if (new Date(cert.validTo).getTime() - now.getTime() < RENEW_BEFORE_DAYS * 86_400_000) return 'expires soon';
  for (const name of plan.names) {
    const covered = canonicalIp(name) !== undefined ? cert.checkIP(name) !== undefined : cert.checkHost(name) !== undefined;
    if (!covered) return `does not cover ${name}`;
  }
  return undefined;
}

/**
 * Make sure a valid self-signed ECDSA P-256 pair for `plan.names` exists; returns true when it was
 * (re)generated. The pair is built in a private temporary directory and renamed into place, so a
 * concurrent reader never sees a half-written file.
 */
export function ensureSelfSigned(plan: SelfSignedPlan, stateDir: string): boolean {
  if (selfSignedProblem(plan) === undefined) return false;
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const work = mkdtempSync(join(stateDir, '.self-signed-'));
  try {
    const dns = plan.names.filter((n) => canonicalIp(n) === undefined);
    const ips = plan.names.filter((n) => canonicalIp(n) !== undefined);
    const san = [...dns.map((n) => `DNS:${n}`), ...ips.map((n) => `IP:${n}`)].join(', ');
    const cnf = join(work, 'openssl.cnf');
    // A minimal config of our own: the system default would add CA:TRUE to a leaf certificate.
    writeFileSync(
      cnf,
      [
        '[req]',
        'distinguished_name = dn',
        'x509_extensions = leaf',
        'prompt = no',
        '[dn]',
        `CN = ${dns[0] ?? 'localhost'}`,
        'O = udpgrm-proxy self-signed',
        '[leaf]',
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = serverAuth',
        'subjectKeyIdentifier = hash',
        `subjectAltName = ${san}`,
        '',
      ].join('\n'),
    );
    const key = join(work, 'key.pem');
    const cert = join(work, 'cert.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-new', '-config', cnf, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256', '-days', String(VALID_DAYS), '-keyout', key, '-out', cert],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    chmodSync(key, 0o600);
    renameSync(key, plan.keyFile);
    renameSync(cert, plan.certFile);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return true;
}

/**
 * Why an existing ticket key file is unusable, 'missing', or undefined when fine. A key that is not
 * a private file of ours is refused, not replaced: it may be the operator's (shared by several
 * hosts), and whoever could write or read it can decrypt resumed sessions, which they must know.
 */
export function ticketKeyProblem(file: string): string | undefined {
  const trust = secretFileProblem(file);
  if (trust !== undefined) return trust;
  try {
    const size = statSync(file).size;
    if (size !== TICKET_KEY_BYTES) {
      return `holds ${size} bytes; a ticket key is exactly ${TICKET_KEY_BYTES} bytes (16 name + 16 HMAC + 16 AES); delete it to have one generated`;
    }
    readFileSync(file);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `unreadable (${(err as Error).message})`;
  }
}

/**
 * Create the ticket key file (48 random bytes, mode 0600) unless it exists; returns true when it
 * created it. Written to a temporary name and hard-linked into place: of two processes racing, one
 * wins and both then use the same key.
 */
export function ensureTicketKey(file: string): boolean {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, randomBytes(TICKET_KEY_BYTES), { mode: 0o600, flag: 'wx' });
  try {
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

/** The 48-byte key for quiche's `Config.setTicketKey`. */
export function readTicketKey(file: string): Buffer {
  const key = readFileSync(file);
  if (key.length !== TICKET_KEY_BYTES) throw new Error(`${file}: ticket key must be ${TICKET_KEY_BYTES} bytes, found ${key.length}`);
  return key;
}
