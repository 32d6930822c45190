/**
 * The up-front memory guard (issue 19, item 4; native/core/pipelines/memory_guard.cc): a call's
 * peak memory is estimated from its shapes before it runs and a call that cannot fit the memory
 * available is refused with E_OUT_OF_MEMORY — nothing runs, the pipeline works on the next smaller
 * call —; normal calls are never refused under the default limits; VAE tiling turns on by itself
 * only when the untiled decode is what does not fit (with a one-time warning); the limit comes from
 * setMemoryLimit or SD_NATIVE_MEMORY_LIMIT (this file runs in its own process: vitest pool 'forks').
 * No timing assertions.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import {
  ControlNetModel, OutOfMemoryError, StableDiffusionControlNetPipeline, StableDiffusionImg2ImgPipeline,
  StableDiffusionInpaintPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline,
} from '../lib/index.js';
import { parseMemorySize } from '../lib/internal/memory_size.js';
import { fixture } from './helpers/fixtures.js';

const SD = fixture('models', 'tiny-sd15');
const small = { prompt: 'a lighthouse at dusk', width: 64, height: 64, numInferenceSteps: 1, seed: 3 };
const rgb = (w: number, h: number) => ({ data: new Uint8Array(w * h * 3).fill(128), width: w, height: h, channels: 3 as const });
const mask = (w: number, h: number) => ({ data: new Uint8Array(w * h).fill(255), width: w, height: h, channels: 1 as const });
async function rejection(p: Promise<unknown>): Promise<any> {
  try { await p; } catch (e) { return e; }
  throw new Error('expected a rejection');
}
/** MiB from a refusal message's "<label> 1.23 GiB" / "<label> 456.7 MiB". */
function mib(message: string, label: string): number {
  const m = new RegExp(`${label} ([\\d.]+) (GiB|MiB|KiB)`).exec(message);
  if (!m) throw new Error(`no "${label}" in: ${message}`);
  return Number(m[1]) * (m[2] === 'GiB' ? 1024 : m[2] === 'KiB' ? 1 / 1024 : 1);
}

let pipe: StableDiffusionPipeline;
beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(SD); });
afterAll(() => pipe?.dispose());

describe('memory guard: refusal up front', () => {
  it('normal calls run under the default limits (cgroup / MemAvailable)', async () => {
    const r = await pipe.generate({ ...small, numImagesPerPrompt: 2 });
    expect(r.images).toHaveLength(2);
  });

  it('4096² and 8192² on the tiny model under a 2 GiB memoryLimit: E_OUT_OF_MEMORY naming the estimate, the limit and what to do; the next smaller call works', async () => {
    pipe.setMemoryLimit('2GiB');
    try {
      for (const size of [4096, 8192]) {
        const e = await rejection(pipe.generate({ ...small, width: size, height: size }));
        expect(e).toBeInstanceOf(OutOfMemoryError);
        expect(e.code).toBe('E_OUT_OF_MEMORY');
        expect(e.message).toMatch(/needs an estimated [\d.]+ GiB/);
        expect(e.message).toContain('2.00 GiB is available (memoryLimit option)');
        expect(e.message).toMatch(/smaller width\/height or batch/);
        expect(mib(e.message, 'estimated')).toBeGreaterThan(2048);
      }
      const r = await pipe.generate(small);
      expect(r.images).toHaveLength(1);
      expect(r.images[0].width).toBe(64);
    } finally {
      pipe.setMemoryLimit(null);
    }
  });

  it('without any limit set, 8192² on the tiny model (estimate ≈ 260 GiB) is refused against the machine\'s own memory instead of being killed', async () => {
    const e = await rejection(pipe.generate({ ...small, width: 8192, height: 8192 }));
    expect(e.code).toBe('E_OUT_OF_MEMORY');
    expect(e.message).toMatch(/is available \((MemAvailable|cgroup)/);
    expect((await pipe.generate(small)).images).toHaveLength(1);
  });

  it('the estimate grows with the batch (CFG doubling included) and the size', async () => {
    pipe.setMemoryLimit(1);
    try {
      const est = async (o: Record<string, unknown>) => mib((await rejection(pipe.generate({ ...small, ...o }))).message, 'estimated');
      const one = await est({ width: 512, height: 512 });
      expect(await est({ width: 512, height: 512, numImagesPerPrompt: 4 })).toBeGreaterThan(one * 2);
      expect(await est({ width: 1024, height: 1024 })).toBeGreaterThan(one * 2);
      // without CFG the denoising step runs on half the rows (the decode, the same, may dominate the peak)
      const step = async (o: Record<string, unknown>) => mib((await rejection(pipe.generate({ ...small, width: 512, height: 512, ...o }))).message, 'step');
      expect(await step({ guidanceScale: 1 })).toBeLessThan((await step({})) * 0.75);
    } finally {
      pipe.setMemoryLimit(null);
    }
  });

  it('SD_NATIVE_MEMORY_LIMIT is read at every call (a MiB suffix), and the smaller of it and memoryLimit applies', async () => {
    process.env.SD_NATIVE_MEMORY_LIMIT = '100MiB';
    try {
      const e = await rejection(pipe.generate({ ...small, width: 1024, height: 1024 }));
      expect(e.code).toBe('E_OUT_OF_MEMORY');
      expect(e.message).toContain('100.0 MiB is available (SD_NATIVE_MEMORY_LIMIT)');
      pipe.setMemoryLimit(50 * 2 ** 20);
      expect((await rejection(pipe.generate({ ...small, width: 1024, height: 1024 }))).message).toContain('50.0 MiB is available (memoryLimit option)');
    } finally {
      delete process.env.SD_NATIVE_MEMORY_LIMIT;
      pipe.setMemoryLimit(null);
    }
    expect((await pipe.generate(small)).images).toHaveLength(1);
  });

  it('every pipeline call checks (img2img, inpaint, ControlNet, SDXL) and works again afterwards', async () => {
    const img2img = await StableDiffusionImg2ImgPipeline.fromPretrained(SD);
    const inpaint = await StableDiffusionInpaintPipeline.fromPretrained(SD);
    const cn = await ControlNetModel.fromPretrained(fixture('models', 'tiny-sd15-controlnet'));
    const control = await StableDiffusionControlNetPipeline.fromPretrained(SD, { controlnet: cn });
    const xl = await StableDiffusionXLPipeline.fromPretrained(fixture('models', 'tiny-sdxl'));
    try {
      const calls: [{ setMemoryLimit(l: number | string | null): unknown }, () => Promise<{ images: unknown[] }>][] = [
        [img2img, () => img2img.generate({ ...small, image: rgb(64, 64), strength: 0.5, numInferenceSteps: 2 })],
        [inpaint, () => inpaint.generate({ ...small, image: rgb(64, 64), maskImage: mask(64, 64) })],
        [control, () => control.generate({ ...small, image: rgb(64, 64) })],
        [xl, () => xl.generate({ ...small })],
      ];
      for (const [p, call] of calls) {
        p.setMemoryLimit('1MiB'); // less than any call's fixed overhead
        expect((await rejection(call())).code).toBe('E_OUT_OF_MEMORY');
        p.setMemoryLimit(null);
        expect((await call()).images).toHaveLength(1);
      }
    } finally {
      for (const p of [img2img, inpaint, control, xl]) p.dispose();
      cn.dispose();
    }
  });

  it('setMemoryLimit refuses a negative or unreadable limit; sizes parse as documented', () => {
    expect(() => pipe.setMemoryLimit(-1)).toThrow(/memoryLimit must be/);
    expect(() => pipe.setMemoryLimit('lots')).toThrow(/memoryLimit must be/);
    expect(() => pipe.setMemoryLimit('1.5B')).toThrow(/memoryLimit must be/);
    expect(parseMemorySize('512MiB', 'x')).toBe(512 * 2 ** 20);
    expect(parseMemorySize('6g', 'x')).toBe(6 * 2 ** 30);
    expect(parseMemorySize('1.5GiB', 'x')).toBe(1.5 * 2 ** 30);
    expect(parseMemorySize(' 1024 ', 'x')).toBe(1024);
  });
});

describe('memory guard: automatic VAE tiling only when the untiled decode would be refused', () => {
  it('turns tiling on for that call with one warning per pipeline; the image equals enableVaeTiling()', async () => {
    const o = { ...small, width: 128, height: 128, guidanceScale: 1 }; // no CFG: the decode dominates
    pipe.setMemoryLimit(1);
    const untiled = mib((await rejection(pipe.generate(o))).message, 'estimated');
    pipe.enableVaeTiling();
    const tiled = mib((await rejection(pipe.generate(o))).message, 'estimated');
    pipe.disableVaeTiling();
    expect(tiled).toBeLessThan(untiled);
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => { if (w.code === 'SD_VAE_AUTO_TILING') warnings.push(w.message); };
    process.on('warning', onWarning);
    try {
      pipe.setMemoryLimit(Math.round(((tiled + untiled) / 2) * 2 ** 20));
      const auto = await pipe.generate(o);
      const again = await pipe.generate(o);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/VAE tiling/);
      pipe.setMemoryLimit(null);
      pipe.enableVaeTiling();
      const explicit = await pipe.generate(o);
      pipe.disableVaeTiling();
      const plain = await pipe.generate(o);
      expect(Buffer.from(auto.images[0].data).equals(Buffer.from(explicit.images[0].data))).toBe(true);
      expect(Buffer.from(again.images[0].data).equals(Buffer.from(explicit.images[0].data))).toBe(true);
      // without the limit the call decodes untiled again (tiling changes the pixels)
      expect(Buffer.from(plain.images[0].data).equals(Buffer.from(explicit.images[0].data))).toBe(false);
    } finally {
      process.off('warning', onWarning);
      pipe.setMemoryLimit(null);
      pipe.disableVaeTiling();
    }
  }, 120_000);
});
