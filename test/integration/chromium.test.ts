/**
 * Headless Chromium loads a page through the proxy over HTTP/3 (CDP reports protocol "h3"),
 * including a sub-resource fetched from an upstream pool.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchH3Chromium, type H3Browser } from '../helpers/chromium.js';
import { freeUdpPort, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { enterPrivateNetns } from '../helpers/netns.js';

// The proxy attaches BPF to its sockets: keep it and its clients in a private network namespace.
enterPrivateNetns();

describe('Chromium over HTTP/3', () => {
  let up: TestUpstream;
  let proxy: RunningProxy;
  let browser: H3Browser;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream('chromium-origin');
    port = await freeUdpPort();
    proxy = await startProxy(`
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes:
  - path: /api/
    upstream: app
  - path: /
    respond:
      status: 200
      headers: { content-type: text/html }
      body: "<!doctype html><title>h3 page</title><h1 id=t>hello over h3</h1>"
upstreams:
  app: { targets: ["${up.origin}"] }
`);
    browser = await launchH3Chromium({ host: '127.0.0.1', port }, path.join(proxy.dir, 'state/self-signed.crt'));
  });

  afterAll(async () => {
    await browser?.close();
    await proxy?.stop();
    await up?.close();
  });

  it('loads a page and an upstream fetch over h3', async () => {
    const { page, protocols } = await browser.newPage();
    const url = `https://127.0.0.1:${port}/`;
    const res = await page.goto(url);
    expect(res?.status()).toBe(200);
    expect(await page.textContent('#t')).toBe('hello over h3');
    expect(protocols.get(url)).toBe('h3');

    const echo = await page.evaluate(async () => {
      const r = await fetch('/api/echo', { method: 'POST', body: 'from the browser' });
      return { status: r.status, json: await r.json() };
    });
    expect(echo.status).toBe(200);
    expect(echo.json.bodyLength).toBe('from the browser'.length);
    expect(protocols.get(`https://127.0.0.1:${port}/api/echo`)).toBe('h3');
  });
});
