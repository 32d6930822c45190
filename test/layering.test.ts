/**
 * The include order of native/core (scripts/check-includes.mjs, docs/ARCHITECTURE-core.md): the
 * tree passes, and the check provably fails on a copy with an upward include, a file-level cycle,
 * or an N-API include in the core.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const script = path.join(repo, 'scripts', 'check-includes.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-layering-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function check(root?: string) {
  const r = spawnSync(process.execPath, root ? [script, root] : [script], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A copy of native/ under tmp in which `file` gets `line` after its first #include. */
function copyWith(name: string, file: string, line: string): string {
  const root = path.join(tmp, name);
  fs.cpSync(path.join(repo, 'native'), path.join(root, 'native'), { recursive: true });
  const p = path.join(root, 'native', 'core', file);
  const lines = fs.readFileSync(p, 'utf8').split('\n');
  const at = lines.findIndex((l) => l.startsWith('#include'));
  expect(at, `${file} has an #include`).toBeGreaterThanOrEqual(0);
  lines.splice(at + 1, 0, line);
  fs.writeFileSync(p, lines.join('\n'));
  return root;
}

describe('native include layering', () => {
  it('the tree has no upward include, no cycle and no N-API in the core', () => {
    const r = check();
    expect(r.out).toMatch(/^check-includes: \d+ files/);
    expect(r.status).toBe(0);
  });

  it('fails on an upward include, naming the file, line and include', () => {
    const root = copyWith('upward', 'io/safetensors.cc', '#include "pipelines/pipeline_base.h"');
    const r = check(root);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/native\/core\/io\/safetensors\.cc:\d+: #include "pipelines\/pipeline_base\.h": io\/ may not include pipelines\//);
  });

  it('fails on a file-level cycle inside one directory', () => {
    // nn/unet_blocks.h includes nn/resnet.h; the reverse include closes a cycle in one layer.
    const root = copyWith('cycle', 'nn/resnet.h', '#include "nn/unet_blocks.h"');
    const r = check(root);
    expect(r.status).toBe(1);
    expect(r.out).toContain('include cycle:');
    expect(r.out).toMatch(/native\/core\/nn\/resnet\.h:\d+ #include "nn\/unet_blocks\.h"/);
    expect(r.out).not.toContain('may not include');
  });

  it('fails when the core includes N-API or the addon', () => {
    const napi = check(copyWith('napi', 'util/json.cc', '#include <napi.h>'));
    expect(napi.status).toBe(1);
    expect(napi.out).toMatch(/native\/core\/util\/json\.cc:\d+: #include <napi\.h>: the core must not use N-API/);
    const addon = check(copyWith('addon', 'models/autoencoder_kl.cc', '#include "addon/util.h"'));
    expect(addon.status).toBe(1);
    expect(addon.out).toMatch(/native\/core\/models\/autoencoder_kl\.cc:\d+: #include "addon\/util\.h": the core includes native\/addon\/util\.h/);
  });
});
