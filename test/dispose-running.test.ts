/**
 * Disposing a pipeline while it works (issue 19, item 6): queued calls reject at once with
 * DisposedError, the running call is aborted and rejects with DisposedError (not AbortError), and
 * the native model is freed once it has stopped; a process that exits with a loaded pipeline, or
 * during a call, exits cleanly.
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DisposedError, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline } from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';
import { fixture } from './helpers/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modelDir = fixture('models', 'tiny-sd15');
// one call at this size takes well over 0.5 s on the tiny model (measured in the first test)
const slow = { prompt: 'a lighthouse', numInferenceSteps: 20, width: 64, height: 64, seed: 1 };
const settle = <T>(p: Promise<T>) => p.then((v) => ({ ok: true as const, v, at: performance.now() }), (e: unknown) => ({ ok: false as const, e, at: performance.now() }));

describe('dispose while a call runs', () => {
  it('the running call rejects with DisposedError, queued calls at once, the model is freed after', async () => {
    const before = addon().livePipelines();
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    await pipe.generate({ ...slow, numInferenceSteps: 1 }); // warm-up
    const t0 = performance.now();
    await pipe.generate({ ...slow, numInferenceSteps: 4 });
    const full = ((performance.now() - t0) / 4) * slow.numInferenceSteps;
    expect(full).toBeGreaterThan(500); // a 20-step call takes ≥ 0.5 s

    let started!: () => void;
    const firstStep = new Promise<void>((r) => { started = r; });
    const running = settle(pipe.generate({ ...slow, onStep: () => started() }));
    const queued = settle(pipe.generate(slow));
    await firstStep;
    const disposedAt = performance.now();
    pipe.dispose();
    const q = await queued;
    expect(q.ok).toBe(false);
    expect(q.ok ? undefined : q.e).toBeInstanceOf(DisposedError);
    const r = await running;
    expect(r.ok).toBe(false);
    expect(r.ok ? undefined : r.e).toBeInstanceOf(DisposedError);
    expect((r.ok ? undefined : r.e as DisposedError)?.code).toBe('E_DISPOSED');
    expect(q.at).toBeLessThanOrEqual(r.at); // the queued call did not wait for the running one
    expect(r.at - disposedAt).toBeLessThan(full * 0.75); // stopped early, not run to the end
    await pipe[Symbol.asyncDispose]();
    expect(addon().livePipelines()).toBe(before);
    await expect(pipe.generate(slow)).rejects.toBeInstanceOf(DisposedError);
  }, 60_000);

  it('a call with neither signal nor onStep is stopped too; a caller abort stays AbortError', async () => {
    const before = addon().livePipelines();
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const ac = new AbortController();
    const aborted = settle(pipe.generate({ ...slow, signal: ac.signal }));
    ac.abort();
    const a = await aborted;
    expect(a.ok ? undefined : (a.e as { code?: string }).code).toBe('E_ABORTED');

    const t0 = performance.now();
    const running = settle(pipe.generate(slow));
    await new Promise((res) => setTimeout(res, 300));
    pipe.dispose();
    const r = await running;
    expect(r.ok ? undefined : r.e).toBeInstanceOf(DisposedError);
    await pipe[Symbol.asyncDispose]();
    expect(addon().livePipelines()).toBe(before);
    expect(performance.now() - t0).toBeLessThan(30_000);
  }, 60_000);

  it('disposing one of two pipelines sharing a model leaves the other\'s call alone', async () => {
    const before = addon().livePipelines();
    const pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
    const other = StableDiffusionImg2ImgPipeline.fromPipeline(pipe);
    const mine = settle(pipe.generate({ ...slow, numInferenceSteps: 5 }));
    const theirs = settle(other.generate({ ...slow, numInferenceSteps: 2, image: { data: new Uint8Array(64 * 64 * 3), width: 64, height: 64, channels: 3 }, width: 64, height: 64 }));
    pipe.dispose();
    const m = await mine;
    expect(m.ok ? undefined : m.e).toBeInstanceOf(DisposedError);
    const t = await theirs;
    if (!t.ok) throw t.e;
    expect(t.v.images).toHaveLength(1);
    expect(addon().livePipelines()).toBe(before + 1);
    await other[Symbol.asyncDispose]();
    expect(addon().livePipelines()).toBe(before);
  }, 60_000);
});

function child(mode: string): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'test/helpers/exit-child.ts', mode, modelDir], { cwd: root, timeout: 60_000, env: process.env },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, signal: err?.signal ?? null, stdout, stderr }));
  });
}

describe('process exit with a live pipeline', () => {
  it('exits cleanly with a loaded, undisposed pipeline', async () => {
    const r = await child('idle');
    expect(r.stderr).toBe('');
    expect(r).toMatchObject({ code: 0, signal: null, stdout: 'exiting\n' });
  }, 60_000);

  it('exits cleanly during a generate', async () => {
    const r = await child('running');
    expect(r.stderr).toBe('');
    expect(r).toMatchObject({ code: 0, signal: null, stdout: 'exiting\n' });
  }, 60_000);
});
