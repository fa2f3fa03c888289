// The service-management page (SPEC §8) in a real headless Chromium, driven by Playwright,
// against `modelhub ui` with a real hub: install with a live progress bar, speed and ETA, the
// current version, cancel, models pulled with progress, the ranking refreshing itself, a failed
// job's message, a page that works with the ranking unreachable, and no CSP violation.
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
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

const cspErrors: string[] = [];

async function openPage(url: string): Promise<Page> {
  const page = await browser.newPage();
  // The page runs under its own strict CSP: anything it blocks is a bug of the page.
  page.on('console', (m) => {
    if (m.type() === 'error') cspErrors.push(m.text());
  });
  await page.goto(url);
  return page;
}

async function setUsage(model_id: string, count: number): Promise<void> {
  const r = await fetch(`${b.hub.url}/api/model-usage`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ model_id, count }) });
  expect(r.status).toBeLessThan(300);
}

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 6 * 1024 * 1024 });
  await b.publish({ version: '1.1.0', modelBytes: 6 * 1024 * 1024 });
  await b.publish({ id: 'bad-svc', version: '1.0.0', behavior: 'exits' });
  await b.publish({ id: 'slow-svc', version: '1.0.0', modelBytes: 8 * 1024 * 1024 });
  await b.publishModel({ id: 'page-model', version: '1.0.0', files: { 'weights.bin': 3 * 1024 * 1024, 'config.json': 0 } });
  for (const [model_id, count] of [['whisper-zh', 40], ['marian-en-zh', 90]] as const) await setUsage(model_id, count);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  expect(cspErrors).toEqual([]);
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
    const details: string[] = [];
    while ((await bar.count()) > 0) {
      const v = await bar.getAttribute('aria-valuenow', { timeout: 200 }).catch(() => null);
      if (v !== null) seen.push(Number(v));
      const d = await row.getByTestId('job-detail').textContent({ timeout: 200 }).catch(() => null);
      if (d !== null) details.push(d);
      await page.waitForTimeout(100);
    }
    b.proxy.rate = 0;
    expect(seen.length).toBeGreaterThan(0);
    // Speed and ETA while downloading.
    expect(details.some((d) => /downloading .*MB \/ .*MB, .*MB\/s, ETA \d+ s/.test(d))).toBe(true);
    for (const v of seen) expect(v >= 0 && v <= 100).toBe(true);
    expect(Math.max(...seen)).toBeGreaterThan(0);
    await expect.poll(() => page.getByTestId('current-demo-echo').textContent(), { timeout: 30_000 }).toBe('1.1.0');
    await expect.poll(() => page.getByTestId('install-demo-echo').textContent()).toBe('Reinstall');

    const ranking = page.getByTestId('ranking');
    await expect.poll(() => ranking.locator('li').allTextContents()).toEqual(['marian-en-zh — 90 requests', 'whisper-zh — 40 requests']);
    await page.close();
  });

  it('cancels a running install from the page: nothing becomes current', async () => {
    const home = await b.newHome();
    const page = await openPage(await startUi(home));
    const row = page.getByTestId('service-slow-svc');
    await row.waitFor();
    b.proxy.rate = 512 * 1024; // 16 s of download: plenty of time to cancel
    try {
      await page.getByTestId('install-slow-svc').click();
      await row.getByRole('progressbar').waitFor({ timeout: 15_000 });
      await expect.poll(() => row.getByTestId('job-detail').textContent(), { timeout: 15_000 }).toMatch(/downloading/);
      await page.getByTestId('cancel-slow-svc').click();
      await expect.poll(() => row.getByRole('progressbar').count(), { timeout: 15_000 }).toBe(0);
    } finally {
      b.proxy.rate = 0;
    }
    expect(await page.getByTestId('current-slow-svc').textContent()).toBe('—');
    expect(await row.getByTestId('error').count()).toBe(0);
    await expect.poll(() => page.getByTestId('install-slow-svc').isEnabled()).toBe(true);
    const jobs = await b.cli(home, ['jobs']);
    expect((jobs.result?.jobs as { state: string }[]).map((j) => j.state)).toEqual(['cancelled']);
    await page.close();
  });

  it('pulls a model with a progress bar, and refreshes the ranking without a reload', async () => {
    const home = await b.newHome();
    const page = await openPage(await startUi(home));
    const row = page.getByTestId('model-page-model');
    await row.waitFor();
    expect(await page.getByTestId('model-installed-page-model').textContent()).toBe('—');
    b.proxy.rate = 1024 * 1024;
    try {
      await page.getByTestId('pull-page-model').click();
      await row.getByRole('progressbar').waitFor({ timeout: 15_000 });
    } finally {
      b.proxy.rate = 0;
    }
    await expect.poll(() => page.getByTestId('model-installed-page-model').textContent(), { timeout: 30_000 }).toBe('1.0.0');
    expect(await page.getByTestId('pull-page-model').textContent()).toBe('Pulled');

    const ranking = page.getByTestId('ranking');
    await expect.poll(() => ranking.locator('li').first().textContent()).toBe('marian-en-zh — 90 requests');
    await setUsage('whisper-zh', 100); // 140 now: first place
    await expect.poll(() => ranking.locator('li').first().textContent(), { timeout: 15_000 }).toBe('whisper-zh — 140 requests');
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

  it('shows a version that verify found damaged, and repairs it from the page', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['models', 'pull', 'page-model@1.0.0'])).result).toMatchObject({ ok: true });
    await writeFile(path.join(home, 'models', 'page-model', '1.0.0', 'config.json'), 'tampered');
    expect((await b.cli(home, ['verify'])).code).toBe(1);
    const page = await openPage(await startUi(home));
    const damaged = page.getByTestId('damaged-page-model');
    await damaged.waitFor();
    expect(await damaged.textContent()).toBe('damaged: 1.0.0 (1 modified, 0 missing)');
    await page.getByTestId('repair-page-model').click();
    await expect.poll(() => page.getByTestId('damaged-page-model').count(), { timeout: 30_000 }).toBe(0);
    expect((await b.cli(home, ['verify'])).result).toMatchObject({ ok: true, models: [{ id: 'page-model', ok: true }] });
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
