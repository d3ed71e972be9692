/**
 * Headless Debian Chromium driven by playwright-core, either forced onto HTTP/3 for one origin
 * (over QUIC it needs the certificate's SPKI hash: --ignore-certificate-errors alone fails) or
 * left to choose as a browser does (HTTP/2 or HTTP/1.1 over TCP: Chromium does not follow Alt-Svc
 * to QUIC for a certificate trusted only through the SPKI list).
 * playwright gives every launch a fresh temporary profile, as the recipe asks.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

export function spkiHash(certPemFile: string): string {
  const cert = new X509Certificate(readFileSync(certPemFile));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

export interface H3Browser {
  readonly browser: Browser;
  newPage(): Promise<{ page: Page; protocols: Map<string, string> }>;
  close(): Promise<void>;
}

/**
 * Chromium forced onto QUIC for `origin` (or several). `resolve`: host names Chromium resolves to
 * 127.0.0.1 (every other name fails to resolve), to reach sites by name (SNI) on loopback.
 */
export async function launchH3Chromium(
  origin: { host: string; port: number } | ReadonlyArray<{ host: string; port: number }>,
  certPemFile: string,
  opts: { readonly resolve?: readonly string[] } = {},
): Promise<H3Browser> {
  const origins = (Array.isArray(origin) ? origin : [origin]) as ReadonlyArray<{ host: string; port: number }>;
  const hostPorts = origins.map((o) => (o.host.includes(':') ? `[${o.host}]:${o.port}` : `${o.host}:${o.port}`));
  return launchChromium(certPemFile, [`--origin-to-force-quic-on=${hostPorts.join(',')}`], opts.resolve ?? []);
}

/** Chromium as users run it: no forced QUIC, so it speaks HTTP/2 (or HTTP/1.1) over TLS. */
export function launchTcpChromium(certPemFile: string): Promise<H3Browser> {
  return launchChromium(certPemFile, []);
}

/**
 * CHROMIUM_NETLOG_DIR=DIR: every Chromium writes its NetLog there (chromium-PID-TIME.json, complete
 * once the browser closed), to see why it opened, closed or left a connection (QUIC_SESSION_* events).
 */
function netLogArgs(): string[] {
  const dir = process.env.CHROMIUM_NETLOG_DIR;
  if (!dir) return [];
  mkdirSync(dir, { recursive: true });
  return [`--log-net-log=${path.join(dir, `chromium-${process.pid}-${Date.now()}.json`)}`, '--net-log-capture-mode=Everything'];
}

async function launchChromium(certPemFile: string, extraArgs: readonly string[], resolve: readonly string[] = []): Promise<H3Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--enable-quic',
      ...extraArgs,
      ...netLogArgs(),
      `--ignore-certificate-errors-spki-list=${spkiHash(certPemFile)}`,
      `--host-resolver-rules=${[...resolve.map((name) => `MAP ${name} 127.0.0.1`), 'MAP * ~NOTFOUND', 'EXCLUDE localhost', 'EXCLUDE 127.0.0.1'].join(', ')}`,
    ],
  });
  return {
    browser,
    async newPage() {
      const page = await browser.newPage();
      const protocols = new Map<string, string>();
      const cdp = await page.context().newCDPSession(page);
      await cdp.send('Network.enable');
      cdp.on('Network.responseReceived', (ev: { response: { url: string; protocol?: string } }) => {
        protocols.set(ev.response.url, ev.response.protocol ?? '');
      });
      return { page, protocols };
    },
    async close() {
      await browser.close();
    },
  };
}
