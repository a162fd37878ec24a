/**
 * GET /docs in a real browser: Debian's Chromium (headless, driven by playwright-core) loads the page from a
 * service on the software backend, finds every operation of /openapi.json listed, runs "Try it out" of
 * POST /v1/random against the same server and sees 200. The page must load nothing from elsewhere and
 * break none of its content-security-policy. It takes a screenshot of the page, the README's
 * (docs/docs-page.png) when run with UPDATE_SCREENSHOT=1.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../../src/app.js';
import { loadServiceConfig } from '../../../src/config/load.js';
import { createLogger } from '../../../src/log.js';
import { createSoftwareBackendConfig, type SoftwareBackendHarness } from '../../helpers/software.js';
import { tempDir } from '../../identity/accessSupport.js';

/** The README's screenshot is rewritten only on request (UPDATE_SCREENSHOT=1); otherwise it goes to a temporary folder. */
const readmeScreenshots = join(dirname(fileURLToPath(import.meta.url)), '../../../docs');

describe('GET /docs', () => {
  const dir = tempDir();
  const screenshotDir = () => (process.env.UPDATE_SCREENSHOT === '1' ? readmeScreenshots : dir.at('screenshots'));
  let harness: SoftwareBackendHarness;
  let app: RunningApp;
  let browser: Browser;

  beforeAll(async () => {
    harness = await createSoftwareBackendConfig();
    writeFileSync(dir.at('config.json'), JSON.stringify({ rest: { port: 0 }, grpc: { enabled: false }, ops: { enabled: false }, backend: { type: 'software', software: harness.config } }));
    app = await startApp(loadServiceConfig({ file: dir.at('config.json'), env: {} }), createLogger('silent'));
    mkdirSync(screenshotDir(), { recursive: true });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await harness?.cleanup();
    dir.remove();
  });

  it('serves the page and its assets from the package with a self-only policy, and nothing else under /docs', async () => {
    const page = await fetch(`${app.restUrl}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toMatch(/^default-src 'self';/);
    expect(await page.text()).not.toMatch(/https?:\/\//);
    const bundle = await fetch(`${app.restUrl}/docs/swagger-ui-bundle.js`);
    expect([bundle.status, bundle.headers.get('content-type'), bundle.headers.get('cache-control')]).toEqual([200, 'text/javascript; charset=utf-8', 'public, max-age=86400']);
    const body = Buffer.from(await bundle.arrayBuffer());
    // Read once, then served from memory: the same bytes on a second request.
    expect(Buffer.from(await (await fetch(`${app.restUrl}/docs/swagger-ui-bundle.js`)).arrayBuffer())).toEqual(body);
    for (const path of ['/docs/package.json', '/docs/index.html', '/docs/..%2Fpackage.json', '/docs/swagger-ui-bundle.js.map']) {
      const refused = await fetch(`${app.restUrl}${path}`);
      expect(refused.status, path).toBe(404);
      expect(await refused.json(), path).toMatchObject({ error: { code: 'NOT_FOUND' } });
    }
  });

  it('lists every operation of the document in Chromium, and "Try it out" of POST /v1/random answers 200', async () => {
    const doc = (await (await fetch(`${app.restUrl}/openapi.json`)).json()) as { paths: Record<string, Record<string, { operationId: string; tags: string[] }>> };
    const origin = new URL(app.restUrl!).origin;
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const elsewhere: string[] = [];
    const pageErrors: string[] = [];
    page.on('request', (request) => {
      if (new URL(request.url()).origin !== origin) elsewhere.push(request.url());
    });
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    page.on('pageerror', (error) => pageErrors.push(error.message));

    await page.goto(`${app.restUrl}/docs`);
    await page.locator('.information-container .title').filter({ hasText: 'hsm-bridge' }).waitFor();
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method, ...op })));
    expect(operations.length).toBeGreaterThan(50);
    for (const op of operations) {
      const block = page.locator(`[id="operations-${op.tags[0]}-${op.operationId}"]`);
      await block.waitFor();
      expect(await block.count(), `${op.method} ${op.path}`).toBe(1);
      expect(await block.locator('.opblock-summary-path').getAttribute('data-path')).toBe(op.path);
    }
    await page.screenshot({ path: join(screenshotDir(), 'docs-page.png') });

    const random = page.locator('#operations-system-generateRandom');
    await random.locator('.opblock-summary-control').click();
    await random.locator('button.try-out__btn').click();
    await random.locator('textarea.body-param__text').fill('{"length":16}');
    await random.locator('button.execute').click();
    const status = random.locator('.live-responses-table .response .response-col_status');
    await status.waitFor();
    expect((await status.innerText()).trim()).toBe('200');
    const body = JSON.parse(await random.locator('.live-responses-table .response-col_description pre.microlight').first().innerText()) as { random: string };
    expect(Buffer.from(body.random, 'base64')).toHaveLength(16);

    expect(elsewhere).toEqual([]);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 60_000);
});
