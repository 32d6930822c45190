import { addon } from './native.js';
import type { BuildInfo } from '../types/native.js';

/** What this build of the addon was compiled with: libtorch version, SDPA, CUDA, CPU threads. */
export function buildInfo(): BuildInfo {
  return addon().buildInfo();
}
