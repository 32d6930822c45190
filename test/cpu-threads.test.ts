/**
 * Issue 17, item 3: the CPU thread pools. A pipeline's `threads` option applies to the thread that
 * runs each call (OpenMP's count is per thread) and to OpenBLAS's process-wide pool, and the loader
 * sets libgomp's spin-wait variable before libtorch loads, unless the user set it
 * (lib/native.ts THREAD_POOL_ENV_DEFAULTS). Each case runs in a child process: the variables are
 * read once, when the libraries load, and OpenBLAS's pool is process-wide.
 */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function child(threads: number, env: Record<string, string | undefined> = {}) {
  const base = { ...process.env };
  for (const k of ['GOMP_SPINCOUNT', 'OPENBLAS_THREAD_TIMEOUT', 'OMP_WAIT_POLICY']) delete base[k];
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/helpers/cpu-threads-child.ts', String(threads)], {
    cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...base, ...env },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    env: { GOMP_SPINCOUNT: string | null; OPENBLAS_THREAD_TIMEOUT: string | null };
    blasThreadsBefore: number; blasThreadsAfter: number; cpuCachingAllocator: boolean; imageSha256: string; image: string;
  };
}

describe('CPU thread pools (issue 17 item 3)', () => {
  it('sets a short spin wait for libgomp (not OpenBLAS) before loading, and the threads option reaches OpenBLAS', () => {
    const one = child(1);
    expect(one.env).toEqual({ GOMP_SPINCOUNT: '1000', OPENBLAS_THREAD_TIMEOUT: null });
    const all = child(0);
    if (one.blasThreadsAfter === -1) {
      // this libtorch does not use OpenBLAS: nothing to size (buildInfo says -1 on both runs)
      expect(all.blasThreadsAfter).toBe(-1);
    } else {
      expect(one.blasThreadsAfter).toBe(1);
      expect(all.blasThreadsAfter).toBe(os.availableParallelism?.() ?? os.cpus().length);
    }
    // the same image up to the last rounding: the thread count only splits the reductions differently
    // (1 pixel of 12,288 moved 1 level on libtorch 1.13)
    const a = Buffer.from(one.image, 'base64'), b = Buffer.from(all.image, 'base64');
    expect(a.length).toBe(64 * 64 * 3);
    expect(b.length).toBe(a.length);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    expect(maxDiff).toBeLessThanOrEqual(1);
  });

  it("leaves the user's settings alone: their values stay, and OMP_WAIT_POLICY keeps GOMP_SPINCOUNT unset", () => {
    const mine = child(1, { GOMP_SPINCOUNT: '5', OPENBLAS_THREAD_TIMEOUT: '10' });
    expect(mine.env).toEqual({ GOMP_SPINCOUNT: '5', OPENBLAS_THREAD_TIMEOUT: '10' });
    const policy = child(1, { OMP_WAIT_POLICY: 'ACTIVE' });
    expect(policy.env).toEqual({ GOMP_SPINCOUNT: null, OPENBLAS_THREAD_TIMEOUT: null });
  });
});
