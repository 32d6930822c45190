// The sd-native CLI (lib/cli.ts), run as users run it through `npx tsx lib/cli.ts`; plus its
// formatting helpers. No native pipeline is needed: these paths fail or finish before loading one.
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatDuration, formatRate, formatCount, formatBytes, outputPaths } from '../lib/cli.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number; stdout: string; stderr: string }
function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      // drop npm's own notices about the user's npmrc
      resolve({ code, stdout, stderr: stderr.split('\n').filter((l) => !l.startsWith('npm warn')).join('\n').trim() });
    });
  });
}

describe('sd-native CLI', () => {
  it('--help lists the commands', async () => {
    const r = await cli('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: sd-native/);
    for (const c of ['generate', 'info', 'create-model']) expect(r.stdout).toMatch(new RegExp(`^\\s+${c} `, 'm'));
  });

  it('generate --help lists its options', async () => {
    const r = await cli('generate', '--help');
    expect(r.code).toBe(0);
    for (const o of ['--model', '--prompt', '--negative-prompt', '--steps', '--guidance', '--width', '--height', '--seed',
      '--scheduler', '--n', '--device', '--dtype', '--out', '--image', '--strength']) {
      expect(r.stdout).toContain(o);
    }
  });

  it('a missing --prompt gives a clear error and exit status 1', async () => {
    const r = await cli('generate', '--model', tmp);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("error [E_INVALID_ARGUMENT]: required option '-p, --prompt <text>' not specified (see sd-native generate --help)");
    expect(r.stdout).toBe('');
  });

  it('a non-numeric --steps names the flag', async () => {
    const r = await cli('generate', '-m', tmp, '-p', 'a cat', '--steps', 'many');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error [E_INVALID_ARGUMENT]: --steps must be a number; received "many"');
  });

  it('a missing model folder is E_MODEL_NOT_FOUND', async () => {
    const r = await cli('generate', '-m', path.join(tmp, 'no-such-model'), '-p', 'a cat');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error \[E_MODEL_NOT_FOUND\]: model folder not found: .*no-such-model \(a Hugging Face Hub model is loaded by its id, org\/name\[@revision\]/m);
  });

  it('create-model rejects an unknown preset; an unknown command is an error', async () => {
    const r = await cli('create-model', '--preset', 'sd3', '--out', tmp);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error \[E_INVALID_ARGUMENT\]: option '--preset <name>' argument 'sd3' is invalid\. Allowed choices are sd15, sd21, sdxl\./);
    const u = await cli('generat');
    expect(u.code).toBe(1);
    expect(u.stderr).toMatch(/^error \[E_INVALID_ARGUMENT\]: unknown command 'generat'/);
  });
});

describe('CLI helpers', () => {
  it('formats like tqdm', () => {
    expect(formatDuration(0)).toBe('00:00');
    expect(formatDuration(65_400)).toBe('01:05');
    expect(formatDuration(3_725_000)).toBe('1:02:05');
    expect(formatDuration(NaN)).toBe('?');
    expect(formatRate(10, 4000)).toBe('2.50it/s');
    expect(formatRate(2, 5000)).toBe('2.50s/it');
    expect(formatRate(0, 0)).toBe('?it/s');
    expect(formatCount(859_520_964)).toBe('859.52M');
    expect(formatCount(2_567_463_684)).toBe('2.57B');
    expect(formatBytes(3_438_083_856)).toBe('3.44 GB');
  });

  it('names output files', async () => {
    expect(await outputPaths('out.png', 1, 42)).toEqual(['out.png']);
    expect(await outputPaths('out.png', 3, 42)).toEqual(['out-1.png', 'out-2.png', 'out-3.png']);
    expect(await outputPaths('out', 2, 42)).toEqual(['out-1.png', 'out-2.png']);
    expect(await outputPaths(tmp, 1, 42)).toEqual([path.join(tmp, '42.png')]);
    expect(await outputPaths(tmp, 2, 7)).toEqual([path.join(tmp, '7-1.png'), path.join(tmp, '7-2.png')]);
  });
});
