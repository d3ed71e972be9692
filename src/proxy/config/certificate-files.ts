/** Checks on configured certificate/key files, done at load so a typo fails `check`, not a handshake. */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface PairProblems {
  readonly cert?: string;
  readonly key?: string;
}

function readProblem(file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `file not found: ${file}`;
  if (code === 'EACCES') return `cannot read ${file}: permission denied`;
  if (code === 'EISDIR') return `${file} is a directory, expected a PEM file`;
  return `cannot read ${file}: ${(err as Error).message}`;
}

export function inspectCertificatePair(certFile: string, keyFile: string, now = new Date()): PairProblems {
  let cert: X509Certificate | undefined;
  let certProblem: string | undefined;
  try {
    const pem = readFileSync(certFile);
    try {
      cert = new X509Certificate(pem);
    } catch {
      certProblem = `${certFile} does not hold a PEM certificate ("-----BEGIN CERTIFICATE-----")`;
    }
  } catch (err) {
    certProblem = readProblem(certFile, err);
  }
  if (cert !== undefined) {
    if (new Date(cert.validTo).getTime() < now.getTime()) certProblem = `certificate ${certFile} expired on ${cert.validTo}`;
    else if (new Date(cert.validFrom).getTime() > now.getTime()) certProblem = `certificate ${certFile} is not valid before ${cert.validFrom}`;
  }

  let key: KeyObject | undefined;
  let keyProblem: string | undefined;
  try {
    const pem = readFileSync(keyFile);
    try {
      key = createPrivateKey(pem);
    } catch {
      keyProblem = `${keyFile} does not hold an unencrypted PEM private key`;
    }
  } catch (err) {
    keyProblem = readProblem(keyFile, err);
  }
  if (cert !== undefined && key !== undefined && keyProblem === undefined && !cert.checkPrivateKey(key)) {
    keyProblem = `${keyFile} is not the private key of ${certFile}`;
  }
  return { ...(certProblem !== undefined && { cert: certProblem }), ...(keyProblem !== undefined && { key: keyProblem }) };
}
