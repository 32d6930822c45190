/**
 * Loads the native addon: a prebuilt binary from `prebuilds/` or a local build in
 * `build/Release` (via node-gyp-build), or the file named by `SD_NATIVE_ADDON` (development).
 * When it cannot load, the error says what to install.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import type { NativeAddon } from '../types/native.js';
import { NativeLoadError } from './errors.js';

const require = createRequire(import.meta.url);

function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    dir = path.dirname(dir);
  }
  throw new NativeLoadError('sd-native: cannot find the package root (binding.gyp) above ' + import.meta.url);
}

let cached: NativeAddon | undefined;

/** The addon's exports (loaded once). Throws {@link NativeLoadError} with install advice. */
export function addon(): NativeAddon {
  if (cached) return cached;
  const explicit = process.env.SD_NATIVE_ADDON;
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
