/** Throwaway ECDSA P-256 certificates and CAs for tests (openssl, installed by setup). */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';

export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

/** Writes `<name>.crt` and `<name>.key` into `dir`, a 2-day self-signed certificate for `cn`. */
export function makeCert(dir: string, name: string, cn: string): CertPair {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

export interface TestCa extends CertPair {
  /** Issues a leaf certificate for `names` (DNS names and IP addresses) signed by this CA. */
  issue(name: string, names: readonly string[], options?: { readonly client?: boolean }): CertPair;
}

/**
 * A throwaway CA in `dir` (`<name>.crt`/`.key`, valid 2 days) that issues leaf certificates with
 * subjectAltNames, as verifying clients (undici, Node's TLS) require.
 */
export function makeCa(dir: string, name: string): TestCa {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
      '-subj', `/CN=${name} test CA`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ],
    { stdio: 'ignore' },
  );
  return {
    cert,
    key,
    issue(leaf, names, options = {}) {
      const leafCert = path.join(dir, `${leaf}.crt`);
      const leafKey = path.join(dir, `${leaf}.key`);
      const csr = path.join(dir, `${leaf}.csr`);
      const ext = path.join(dir, `${leaf}.ext`);
      const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=${options.client ? 'clientAuth' : 'serverAuth'}\n`);
      execFileSync('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', leafKey, '-out', csr, '-subj', `/CN=${names[0] ?? leaf}`], { stdio: 'ignore' });
      execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', cert, '-CAkey', key, '-CAcreateserial', '-out', leafCert, '-days', '2', '-extfile', ext], { stdio: 'ignore' });
      return { cert: leafCert, key: leafKey };
    },
  };
}
