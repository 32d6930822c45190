/**
 * Memory goes back after dispose() (issue 19, item 4d): rounds of loading 12 tiny pipelines at
 * once and disposing them keep the process's RSS within 10 % of its level after the first two
 * rounds (warm-up: libtorch's thread pools, V8's heap and the allocator's arenas reach their
 * working size). The weights' memory is returned by malloc_trim (native/core/runtime/memory.h);
 * the full-size figures (5 SD 1.5 cycles: 6,001 MiB without it, 252 MiB with it) are in
 * docs/RELIABILITY.md. Linux only (/proc/self/status).
 */
import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import { fixture } from './helpers/fixtures.js';

describe.skipIf(!fs.existsSync('/proc/self/status'))('RSS after load/dispose rounds', () => {
  it('6 rounds of 12 tiny pipelines: RSS after dispose stays within 10 % of the warmed-up level', async () => {
    const { stdout } = await promisify(execFile)(process.execPath,
      ['--expose-gc', '--import', 'tsx', 'test/helpers/rss-child.ts', fixture('models', 'tiny-sd15'), '6', '12'],
      { env: { ...process.env, NODE_NO_WARNINGS: '1' }, encoding: 'utf8' });
    const after = JSON.parse(stdout) as number[];
    console.log(`RSS after each round's dispose (MiB): ${after.map((x) => x.toFixed(0)).join(', ')}`);
    expect(after).toHaveLength(6);
    const warm = Math.max(after[0], after[1]);
    for (const x of after.slice(2)) expect(x).toBeLessThanOrEqual(warm * 1.1);
  }, 600_000);
});
