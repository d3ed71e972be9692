/** Throwaway ECDSA P-256 certificates for tests (openssl, installed by setup). */
import { execFileSync } from 'node:child_process';
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
