/**
 * Memory sizes as `SD_NATIVE_MEMORY_LIMIT` and `setMemoryLimit` take them (issue 19 memory guard):
 * a non-negative number of bytes, or a string of a number with an optional binary suffix
 * K/KiB, M/MiB, G/GiB, T/TiB (case-insensitive; `'512MiB'`, `'6G'`, `'1.5GiB'`, `'1073741824'`).
 * The native core parses the environment variable the same way (runtime/memory.cc parseMemorySize).
 */
import { InvalidArgumentError, describeValue } from '../errors.js';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tib: 2 ** 40 };

/**
 * Bytes for `value`; `field` names it in the error.
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a negative, non-finite or unreadable size.
 */
export function parseMemorySize(value: unknown, field: string): number {
  let bytes = Number.NaN;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
    if (m && unit !== undefined && !(unit === 1 && m[1].includes('.'))) bytes = Number(m[1]) * unit;
  }
  if (!Number.isFinite(bytes) || bytes < 0 || bytes > 9e18) {
    throw new InvalidArgumentError(`${field} must be a number of bytes >= 0 or a size such as '512MiB' or '6GiB'; received ${describeValue(value)}`);
  }
  return Math.floor(bytes);
}
