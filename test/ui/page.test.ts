// The service-management page (SPEC §8) in a real headless Chromium, driven by Playwright,
// against `modelhub ui` with a real hub: install with a live progress bar, the current version,
// the ranking, a failed job's message, and a page that works with the ranking unreachable.
import type { ChildProcess } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_TOKEN } from '../helpers/hub.js';
import { spawnCli, waitForLine } from '../helpers/cli.js';
import { makeBench, type Bench } from '../engine/fixture.js';

let b: Bench;
let browser: Browser;
const children: ChildProcess[] = [];
const homes: string[] = [];

async function startUi(home: string): Promise<string> {
  homes.push(home);
  const child = spawnCli(['ui', '--port', '0', '--home', home, '--hub', b.proxy.url, '--json']);
  children.push(child);
  const ready = await waitForLine(child, 'ready');
  return String(ready.url);
}

async function openPage(url: string): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(url);
  return page;
}

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 6 * 1024 * 1024 });
  await b.publish({ version: '1.1.0', modelBytes: 6 * 1024 * 1024 });
  await b.publish({ id: 'bad-svc', version: '1.0.0', behavior: 'exits' });
  for (const [model_id, count] of [['whisper-zh', 40], ['marian-en-zh', 90]] as const) {
    await fetch(`${b.hub.url}/api/model-usage`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ model_id, count }) });
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  for (const c of children) c.kill('SIGTERM');
  b.proxy.rate = 0;
  // The services the page installed run detached: stop them.
  for (const home of homes) await b.cli(home, ['uninstall', 'demo-echo']);
});

describe('modelhub ui', () => {
  it('installs from the page with a live progress bar, then shows the current version', async () => {
    const home = await b.newHome();
    const page = await openPage(await startUi(home));
    const row = page.getByTestId('service-demo-echo');
    await row.waitFor();
    await expect.poll(() => page.getByTestId('current-demo-echo').textContent()).toBe('—');
    await expect.poll(() => page.getByTestId('install-demo-echo').textContent()).toBe('Install 1.1.0');

    b.proxy.rate = 3 * 1024 * 1024; // about 2 s of download: the bar is visible
    await page.getByTestId('install-demo-echo').click();
    const bar = row.getByRole('progressbar');
    await bar.waitFor({ timeout: 15_000 });
    const seen: number[] = [];
    while ((await bar.count()) > 0) {
      const v = await bar.getAttribute('aria-valuenow', { timeout: 200 }).catch(() => null);
      if (v !== null) seen.push(Number(v));
      await page.waitForTimeout(100);
    }
    b.proxy.rate = 0;
    expect(seen.length).toBeGreaterThan(0);
    for (const v of seen) expect(v >= 0 && v <= 100).toBe(true);
    expect(Math.max(...seen)).toBeGreaterThan(0);
    await expect.poll(() => page.getByTestId('current-demo-echo').textContent(), { timeout: 30_000 }).toBe('1.1.0');
    await expect.poll(() => page.getByTestId('install-demo-echo').textContent()).toBe('Reinstall');

    const ranking = page.getByTestId('ranking');
    await expect.poll(() => ranking.locator('li').allTextContents()).toEqual(['marian-en-zh — 90 requests', 'whisper-zh — 40 requests']);
    await page.close();
  });

  it("shows a failed job's message", async () => {
    const home = await b.newHome();
    const page = await openPage(await startUi(home));
    await page.getByTestId('service-bad-svc').waitFor();
    await page.getByTestId('install-bad-svc').click();
    const error = page.getByTestId('service-bad-svc').getByTestId('error');
    await error.waitFor({ timeout: 30_000 });
    expect(await error.textContent()).toContain('START_FAILED');
    expect(await page.getByTestId('current-bad-svc').textContent()).toBe('—');
    await page.close();
  });

  it('works with the ranking unreachable', async () => {
    const home = await b.newHome();
    b.proxy.down.add('/api/model-usage/ranking');
    try {
      const page = await openPage(await startUi(home));
      await page.getByTestId('service-demo-echo').waitFor();
      await expect.poll(() => page.locator('#ranking-note').textContent()).toContain('ranking unavailable');
      expect(await page.getByTestId('ranking').locator('li').count()).toBe(0);
      await page.getByTestId('install-demo-echo').click();
      await expect.poll(() => page.getByTestId('current-demo-echo').textContent(), { timeout: 30_000 }).toBe('1.1.0');
      await page.close();
    } finally {
      b.proxy.down.clear();
    }
  });
});
