/**
 * Bounded VAE memory without changing the image (issue 19, item 4; pipelines/memory_guard.cc and
 * nn/attention.cc):
 * - a batch whose decode would pass the attention budget is decoded one image at a time
 *   (diffusers' enable_vae_slicing, automatically);
 * - a math-path attention whose scores pass the budget even one head at a time (the VAE
 *   mid-block's single head at a large size) is computed in query chunks.
 * The budget (SD_NATIVE_ATTENTION_BUDGET_MB) is read once per process, so each side runs in a
 * child (test/helpers/vae-slicing-child.ts); a 1 MiB budget forces both paths at 64², batch 2.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-vaeslice-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Pixels of `a` vs `b`: the largest uint8 difference and the fraction that differ. */
function diff(a: Buffer[], b: Buffer[]): { max: number; off: number } {
  let max = 0, off = 0, total = 0;
  for (let k = 0; k < a.length; k++) {
    expect(b[k].length).toBe(a[k].length);
    for (let i = 0; i < a[k].length; i++) { const d = Math.abs(a[k][i] - b[k][i]); max = Math.max(max, d); if (d) off++; total++; }
  }
  return { max, off: off / total };
}

async function run(budgetMb: number, backend: 'auto' | 'math'): Promise<{ images: Buffer[]; explicitlySliced: Buffer[] }> {
  const out = path.join(tmp, `${budgetMb}-${backend}.json`);
  await promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/helpers/vae-slicing-child.ts', fixture('models', 'tiny-sd15'), out, backend], {
    env: { ...process.env, SD_NATIVE_ATTENTION_BUDGET_MB: String(budgetMb), NODE_NO_WARNINGS: '1' }, encoding: 'utf8',
  });
  const r = JSON.parse(fs.readFileSync(out, 'utf8')) as { images: string[]; explicitlySliced: string[] };
  const buffers = (l: string[]) => l.map((b) => Buffer.from(b, 'base64'));
  return { images: buffers(r.images), explicitlySliced: buffers(r.explicitlySliced) };
}

describe('automatic VAE bounds give the same images', () => {
  it('automatic VAE slicing (batch 2 past a 1 MiB budget; attention \'auto\', which the budget does not touch) is enableVaeSlicing(): same bits, and the plain decode within one level', async () => {
    // 'auto' picks the flash kernel (libtorch 1.13) or SDPA (2.x) at every attention of the tiny
    // model, which hold no scores, so the budget changes only the decode: one image at a time —
    // the very path of enableVaeSlicing(), hence bit-identical to it. Against the batched decode
    // oneDNN convolutions of batch 1 and batch 2 may block differently, so the explicit slicing
    // test's tolerance applies (test/optimizations.test.ts: max uint8 difference 1 on < 1 %).
    const plain = await run(0, 'auto');
    const bounded = await run(1, 'auto');
    expect(bounded.images).toHaveLength(2);
    for (let i = 0; i < 2; i++) {
      expect(bounded.images[i].equals(bounded.explicitlySliced[i])).toBe(true);
      expect(bounded.images[i].equals(plain.explicitlySliced[i])).toBe(true);
    }
    const d = diff(plain.images, bounded.images);
    expect(d.max).toBeLessThanOrEqual(1);
    expect(d.off).toBeLessThan(0.01);
  }, 300_000);

  it('query-chunked math attention (scores past the budget one head at a time) and VAE slicing: pixels within one level on < 1 %', async () => {
    // The math path with a 1 MiB budget: UNet attention sliced per head and query-chunked, the VAE
    // mid-block (1 head, 32² = 1,024 queries: 12 MiB of scores) query-chunked, the batch decoded
    // per image. Softmax is row-wise, so each query row is computed the same way; the GEMMs of a
    // chunk may block differently, hence the fixture tolerance of the explicit slicing test
    // (test/optimizations.test.ts, test/attention-budget.test.ts) rather than bit-equality.
    const plain = await run(0, 'math');
    const bounded = await run(1, 'math');
    const d = diff(plain.images, bounded.images);
    expect(d.max).toBeLessThanOrEqual(1);
    expect(d.off).toBeLessThan(0.01);
  }, 300_000);
});
