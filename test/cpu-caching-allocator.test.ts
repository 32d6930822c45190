/**
 * Issue 17, item 3: the caching CPU allocator (native/core/runtime/cpu_caching_allocator.h). Large
 * tensor buffers freed during a pipeline call are handed out again for the next request of the
 * same size instead of being unmapped and faulted in afresh; when the call ends — resolved or
 * rejected — every cached block is unmapped, so an idle process holds nothing; live + cached stays
 * within the live peak plus the slack (testingAddon().cpuCacheExercise drives the allocator with
 * chosen sizes); and the images are the same bytes as with libtorch's own allocator
 * (SD_CPU_CACHING_ALLOCATOR=0, in a child process).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline, buildInfo, SdError } from '../lib/index.js';
import { testingAddon } from '../lib/native.js';
import { fixture } from './helpers/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const linux = process.platform === 'linux';
// 128² with the tiny model (VAE factor 2): [2, 32, 64, 64] float32 activations, 1 MiB each
const CALL = { prompt: 'a red cube', numInferenceSteps: 3, guidanceScale: 7, seed: 11, height: 128, width: 128 };
const stats = () => testingAddon().cpuCacheStats();

describe.skipIf(!linux)('caching CPU allocator (issue 17 item 3)', () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15')); });
  afterAll(() => pipe?.dispose());

  it('is libtorch\'s CPU allocator once the addon is loaded', () => {
    expect(buildInfo().cpuCachingAllocator).toBe(true);
    expect(stats().installed).toBe(true);
  });

  it('serves a call\'s repeated sizes from the cache and holds nothing once the call ends', async () => {
    const s0 = stats();
    let during: ReturnType<typeof stats> | undefined;
    await pipe.generate({ ...CALL, onStep: () => { during = stats(); } });
    const s1 = stats();
    expect(during!.openScopes).toBe(1);              // the call's scope was open at its steps
    expect(s1.hits - s0.hits).toBeGreaterThan(0);    // repeated sizes came from the cache
    expect(s1.hits - s0.hits).toBeGreaterThan(s1.misses - s0.misses); // …more often than not
    // the VAE decode's new sizes recycled the denoising loop's blocks (retireCpuCache)
    expect(s1.recycled - s0.recycled).toBeGreaterThan(0);
    expect(s1.openScopes).toBe(0);
    expect(s1.cachedBytes).toBe(0);                  // all unmapped when the call ended
    expect(s1.unmappedBytes).toBeGreaterThan(s0.unmappedBytes);
    expect(s1.liveBytes).toBe(s0.liveBytes);         // nothing of the call is left live
  });

  it('hands a freed block out again for the same size, and unmaps the cache when the scope closes', () => {
    const r = testingAddon().cpuCacheExercise(Array(10).fill(4 * 2 ** 20));
    expect(r.misses).toBe(1);
    expect(r.hits).toBe(9);
    expect(r.cachedAfter).toBe(4 * 2 ** 20);
    expect(r.cachedAtEnd).toBe(0);
  });

  it('caches no more than the budget the memory guard leaves (setCpuCacheBudget)', () => {
    const MiB = 2 ** 20;
    const none = testingAddon().cpuCacheExercise(Array(10).fill(4 * MiB), 0, 0);
    expect(none.hits).toBe(0);          // each freed block went back to the kernel
    expect(none.misses).toBe(10);
    expect(none.cachedAfter).toBe(0);
    // keep 2 alive: three blocks exist at a time; an 8 MiB budget caches two freed ones at most
    const some = testingAddon().cpuCacheExercise(Array(10).fill(4 * MiB), 2, 8 * MiB);
    expect(some.maxLiveCached - some.baseLive).toBeLessThanOrEqual(3 * 4 * MiB + 8 * MiB);
    expect(some.hits).toBeGreaterThan(0);
    expect(some.cachedAfter).toBeLessThanOrEqual(8 * MiB);
  });

  it('keeps live + cached within the live peak plus 256 MiB when every size is new, recycling blocks past it', () => {
    // 400 distinct sizes of ~1 MiB, each freed before the next: 400 misses; without the limit the
    // cache would hold all of them (~560 MiB); the activation peak is ~1.6 MiB, so the slack is the
    // 256 MiB minimum, and past it each miss recycles a cached block (mremap) instead of mapping
    const MiB = 2 ** 20;
    const sizes = Array.from({ length: 400 }, (_, k) => MiB + 4096 * k);
    const r = testingAddon().cpuCacheExercise(sizes);
    expect(r.misses).toBe(400);
    expect(r.hits).toBe(0);
    const activation = r.maxLive - r.baseLive;
    expect(activation).toBeLessThanOrEqual(2 * MiB);
    expect(r.maxLiveCached - r.baseLive).toBeLessThanOrEqual(activation + 256 * MiB + 2 * MiB);
    expect(r.maxLiveCached - r.baseLive).toBeGreaterThan(200 * MiB); // it did cache up to the limit
    expect(r.recycled).toBeGreaterThan(100);
    expect(r.cachedAtEnd).toBe(0);
  });

  it('releases the cache when a call is rejected, and the next call works', async () => {
    const ac = new AbortController();
    let steps = 0;
    const err = await pipe.generate({ ...CALL, signal: ac.signal, onStep: () => { if (++steps === 2) ac.abort(); } })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(SdError);
    expect((err as SdError).code).toBe('E_ABORTED');
    expect(stats().openScopes).toBe(0);
    expect(stats().cachedBytes).toBe(0);
    const again = await pipe.generate(CALL);
    expect(again.images[0].data.length).toBe(128 * 128 * 3);
  });

  it('gives the same image bytes as libtorch\'s own allocator', async () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/helpers/cpu-threads-child.ts', '0'], {
      cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, SD_CPU_CACHING_ALLOCATOR: '0' },
    });
    expect(r.status, r.stderr).toBe(0);
    const theirs = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(theirs.cpuCachingAllocator).toBe(false);
    // the child's call: { prompt: 'a red cube', 2 steps, guidance 7, seed 3, 64×64 }
    const ours = await pipe.generate({ prompt: 'a red cube', numInferenceSteps: 2, guidanceScale: 7, seed: 3, height: 64, width: 64 });
    expect(createHash('sha256').update(ours.images[0].data).digest('hex')).toBe(theirs.imageSha256);
  });
});
