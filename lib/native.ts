/**
 * Loads the native addon: a prebuilt binary from `prebuilds/` or a local build in
 * `build/Release` (via node-gyp-build), or the file named by `SD_NATIVE_ADDON` (development).
 * When it cannot load, the error says what to install.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import type { NativeAddon, TestingAddon } from '../types/native.js';
import { NativeLoadError } from './errors.js';

const require = createRequire(import.meta.url);

/** @internal The installed package's root folder (the one holding package.json and binding.gyp). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    dir = path.dirname(dir);
  }
  throw new NativeLoadError('sd-native: cannot find the package root (binding.gyp) above ' + import.meta.url);
}

let cached: NativeAddon | undefined;

/**
 * UCX settings applied before the addon (and so libtorch) is loaded, unless the user set them.
 * Some libtorch builds link MPI (Debian's 2.x: libtorch_cpu → libmpi → UCX), and UCX's
 * library constructors then (1) binary-patch libc's mmap/munmap/mremap/shmat/brk in place
 * ("bistro" memory hooks) while Node's other threads are calling them — the load crashed with
 * SIGSEGV in 3 of 240 runs measured, inside V8 allocation right after the patch; with the hooks
 * off, 0 of 360 — (2) start a VFS monitoring thread, and (3) take over SIGSEGV/SIGBUS/SIGILL/SIGFPE
 * from Node. sd-native uses no MPI, so none of this is needed.
 */
export const UCX_ENV_DEFAULTS: Readonly<Record<string, string>> = {
  UCX_MEM_MMAP_HOOK_MODE: 'none',
  UCX_MEM_MALLOC_HOOKS: 'no',
  UCX_MEM_EVENTS: 'no',
  UCX_VFS_ENABLE: 'n',
  UCX_ERROR_SIGNALS: '',
};

/**
 * Thread-pool settings applied before the addon (and so libtorch and libgomp) is loaded, unless the
 * user set them (issue 17, item 3: the pools must not oversubscribe the cores). libtorch runs its
 * CPU kernels on OpenMP threads and its float32 matmuls on OpenBLAS's own pthread pool; by default
 * libgomp's idle threads spin for 300,000 iterations after each parallel region, against OpenBLAS's
 * workers on the same cores, and a float32 UNet step spent a third of its CPU time in the kernel.
 * A short spin measured a full-size SD 1.5 UNet step at 256² on 2 cores (native/tools/profile_step,
 * libtorch 1.13) at 1.45–1.63 s instead of 2.51–2.52 s (docs/BENCHMARKS.md). OpenBLAS's own spin
 * (OPENBLAS_THREAD_TIMEOUT) is left alone: its shortest setting gained a little more but made
 * Debian 13's OpenBLAS 0.3.29 deadlock in its fork handler (a child_process spawn after a generation
 * hung). Read by libgomp once, when it is loaded: setting it later has no effect.
 */
export const THREAD_POOL_ENV_DEFAULTS: Readonly<Record<string, string>> = {
  GOMP_SPINCOUNT: '1000',
};

/** The addon's exports (loaded once). Throws {@link NativeLoadError} with install advice. */
export function addon(): NativeAddon {
  if (cached) return cached;
  const explicit = process.env.SD_NATIVE_ADDON;
  for (const [k, v] of Object.entries(UCX_ENV_DEFAULTS)) if (process.env[k] === undefined) process.env[k] = v;
  // OMP_WAIT_POLICY set by the user decides libgomp's spinning: leave GOMP_SPINCOUNT to it then
  for (const [k, v] of Object.entries(THREAD_POOL_ENV_DEFAULTS))
    if (process.env[k] === undefined && !(k === 'GOMP_SPINCOUNT' && process.env.OMP_WAIT_POLICY !== undefined)) process.env[k] = v;
  try {
    if (explicit) {
      cached = require(path.resolve(explicit)) as NativeAddon;
    } else {
      const load = require('node-gyp-build') as (dir: string) => NativeAddon;
      cached = load(packageRoot());
    }
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const hint = /libtorch|libc10|libtorch_cpu/.test(msg)
      ? 'libtorch was not found at run time. On Debian/Ubuntu: sudo apt-get install libtorch-dev; ' +
        'otherwise set LD_LIBRARY_PATH to your libtorch/lib.'
      : 'Build it with `npm rebuild sd-native` (needs libtorch: `sudo apt-get install libtorch-dev`, ' +
        'or LIBTORCH=/path/to/libtorch, or a python3 with torch installed).';
    throw new NativeLoadError(`sd-native: the native addon could not be loaded: ${msg}\n${hint}`, { cause: e });
  }
  return cached!;
}

/**
 * @internal The same addon typed with its test-only bindings (types/native.ts `TestingAddon`):
 * the UNet on its own, the fp8 codecs, encodeText, livePipelines, pipelineWeight, schedulerNames.
 * For tests and benchmarks; lib/ itself calls only {@link addon}.
 */
export function testingAddon(): TestingAddon {
  return addon() as TestingAddon;
}
