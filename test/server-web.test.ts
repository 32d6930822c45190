/**
 * The web page of `sd-native serve` (issue 15, item 4) in a real browser: Debian's headless
 * Chromium driven by puppeteer-core. Type a prompt, click Generate: the progress bar moves, the
 * image appears with its parameters and a download link, and the session gallery holds it. A
 * screenshot of the page is saved to .test-output/server-web.png (or $SD_TEST_OUTPUT) (its path is printed).
 * Chromium: `apt-get install chromium` (scripts/setup.sh installs it); set SD_CHROMIUM to use another.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser } from 'puppeteer-core';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { createServer } from '../lib/server/app.js';
import { LocalBackend } from '../lib/server/local_backend.js';
import { PipelineExecutor } from '../lib/server/executor.js';
import { fixture } from './helpers/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const chromium = [process.env.SD_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && fs.existsSync(p));

let executor: PipelineExecutor;
let app: FastifyInstance;
let base: string;
let browser: Browser | undefined;

beforeAll(async () => {
  executor = await PipelineExecutor.load([fixture('models', 'tiny-sd15')], { threads: 1 });
  app = await createServer({ backend: new LocalBackend(executor), executor });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  if (chromium) {
    browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  }
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
  executor?.dispose();
});

describe('web page', () => {
  it('a Chromium is installed (scripts/setup.sh installs Debian\'s chromium)', () => {
    expect(chromium, 'no chromium found: apt-get install chromium, or set SD_CHROMIUM').toBeDefined();
  });

  it.runIf(chromium)('type a prompt, click Generate: progress, the image, its parameters, a download, the gallery', async () => {
    const page = await browser!.newPage();
    await page.setViewport({ width: 1100, height: 900 });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(base + '/', { waitUntil: 'networkidle0' });
    await page.waitForSelector('body[data-ready="true"]');
    expect(await page.$eval('#model', (s) => (s as HTMLSelectElement).value)).toBe('tiny-sd15');
    expect(await page.$$eval('#scheduler option', (o) => o.map((x) => x.textContent))).toContain('Euler a');

    await page.type('#prompt', 'a lighthouse at dusk');
    await page.type('#negativePrompt', 'fog');
    await page.$eval('#steps', (e) => { (e as HTMLInputElement).value = ''; });
    await page.type('#steps', '12');
    await page.type('#seed', '1234');
    await page.select('#scheduler', 'Euler a');
    // record the progress values the page shows while the job runs
    await page.evaluate(() => {
      const seen: number[] = [];
      (window as unknown as { seen: number[] }).seen = seen;
      new MutationObserver(() => seen.push((document.getElementById('progress') as HTMLProgressElement).value))
        .observe(document.getElementById('progressText')!, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#generate');
    await page.waitForFunction(() => (document.getElementById('image') as HTMLImageElement).src.startsWith('data:image/png'), { timeout: 60_000 });
    await page.waitForFunction(() => document.querySelectorAll('#gallery img').length === 1);

    const seen = await page.evaluate(() => (window as unknown as { seen: number[] }).seen);
    expect(seen.some((v) => v > 0 && v < 1)).toBe(true); // the bar moved during the steps
    expect(await page.$eval('#progress', (p) => (p as HTMLProgressElement).value)).toBe(1);
    const params = await page.$eval('#parameters', (p) => p.textContent ?? '');
    expect(params).toMatch(/^a lighthouse at dusk\nNegative prompt: fog\nSteps: 12, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 64x64/);
    expect(await page.$eval('#error', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.$eval('#generate', (b) => (b as HTMLButtonElement).disabled)).toBe(false);

    // the download link serves the same PNG
    const href = await page.$eval('#download', (a) => (a as HTMLAnchorElement).href);
    expect(href).toMatch(/\/v1\/jobs\/[0-9a-f-]+\/images\/0\.png$/);
    const png = Buffer.from(await (await fetch(href)).arrayBuffer());
    expect((await sharp(png).metadata()).width).toBe(64);
    const shown = await page.$eval('#image', (i) => (i as HTMLImageElement).src);
    expect(Buffer.from(shown.split(',')[1], 'base64').equals(png)).toBe(true);

    const out = path.join(process.env.SD_TEST_OUTPUT ?? path.join(root, '.test-output'), 'server-web.png');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await page.screenshot({ path: out as `${string}.png`, fullPage: true });
    expect(fs.statSync(out).size).toBeGreaterThan(10_000);
    console.log(`web page screenshot: ${out}`);

    // a bad value is shown as the server's error
    await page.$eval('#steps', (e) => { (e as HTMLInputElement).value = '0'; });
    await page.click('#generate');
    await page.waitForFunction(() => !(document.getElementById('error') as HTMLElement).hidden);
    expect(await page.$eval('#error', (e) => e.textContent)).toContain('E_INVALID_ARGUMENT: numInferenceSteps must be an integer in [1, 1000]; received 0');
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
