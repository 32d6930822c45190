/**
 * Bounded attention memory by default (issue 19, item 4a): unsliced math attention whose score
 * tensors would exceed a budget (1 GiB by default; SD_NATIVE_ATTENTION_BUDGET_MB) is sliced with
 * diffusers' slice sizes (half the heads, else one head) — native/core/nn/attention.cc
 * attentionSliceSize. The image must not change: the same tolerance as the explicit slicing test
 * (test/optimizations.test.ts: final latents relative error < 1e-4, pixels within one level on
 * < 1 %), and the call's peak memory must drop. The budget is read once per process, so each side
 * runs in a child (test/helpers/attention-child.ts).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-attn-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface ChildResult { hwmBefore: number; hwm: number; latents: number[]; images: string[] }

async function run(budgetMb: number, size: number, batch: number): Promise<ChildResult> {
  const out = path.join(tmp, `budget-${budgetMb}.json`);
  await promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/helpers/attention-child.ts', fixture('models', 'tiny-sd15'), out, String(size), String(batch)], {
    env: { ...process.env, SD_NATIVE_ATTENTION_BUDGET_MB: String(budgetMb), NODE_NO_WARNINGS: '1' }, encoding: 'utf8',
  });
  return JSON.parse(fs.readFileSync(out, 'utf8')) as ChildResult;
}

describe('attention memory budget (default: sliced beyond 1 GiB of scores)', () => {
  it('a budget small enough to slice every attention call gives the same image and a lower peak', async () => {
    // 64² on the tiny model (VAE factor 2): 32² = 1,024 tokens; batch 2 with CFG = 4 rows per head:
    // unsliced scores ≈ 4·heads·1024²·12 B ≈ 50 MB·heads; the 1 MiB budget slices to one head at a time
    // (96², batch 4: 2,649 → 99 MiB of peak growth, bit-identical; ~10 min here, so not in CI)
    const plain = await run(0, 64, 2);
    const bounded = await run(1, 64, 2);
    let num = 0, den = 0;
    for (let i = 0; i < plain.latents.length; i++) { num += (bounded.latents[i] - plain.latents[i]) ** 2; den += plain.latents[i] ** 2; }
    const rel = Math.sqrt(num / den);
    expect(rel).toBeLessThan(1e-4);
    let maxDiff = 0, off = 0, total = 0;
    plain.images.forEach((b64, k) => {
      const a = Buffer.from(b64, 'base64'), b = Buffer.from(bounded.images[k], 'base64');
      expect(b.length).toBe(a.length);
      for (let i = 0; i < a.length; i++) { const d = Math.abs(a[i] - b[i]); maxDiff = Math.max(maxDiff, d); if (d) off++; total++; }
    });
    expect(maxDiff).toBeLessThanOrEqual(1);
    expect(off / total).toBeLessThan(0.01);
    const peak = (c: ChildResult) => (c.hwm - c.hwmBefore) / 1024;
    console.log(`attention budget: latents rel ${rel.toExponential(2)}, max pixel diff ${maxDiff}; peak growth during the call `
      + `unbounded ${peak(plain).toFixed(0)} MiB, 1 MiB budget ${peak(bounded).toFixed(0)} MiB`);
    expect(peak(bounded)).toBeLessThan(peak(plain) / 2);
  }, 600_000);
});
