/**
 * Output writes (issue 19, item 6): the output folder is checked before a generation (created when
 * missing, writable), files are written to a temporary file and renamed, and every failure is an
 * IoError (`E_IO`) naming the path and the reason.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GeneratedImage, IoError, checkOutputDir } from '../lib/index.js';
import { writeFileAtomic, writeFileAtomic as writeAtomicInternal } from '../lib/image.js';
import { checkOutput } from '../lib/cli.js';
import { fixture } from './helpers/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-native-io-'));
afterAll(() => {
  try { fs.chmodSync(path.join(tmp, 'ro'), 0o755); } catch { /* not made */ }
  fs.rmSync(tmp, { recursive: true, force: true });
});

const params = {
  prompt: 'x', negativePrompt: '', numInferenceSteps: 1, guidanceScale: 7.5, seed: 1, width: 8, height: 8,
  scheduler: 'PNDMScheduler', model: 'm',
};
const image = () => new GeneratedImage(8, 8, Buffer.alloc(8 * 8 * 3, 128), params);

/**
 * A folder this process cannot write to. chmod 0o555 stops writes only for non-root users; as root
 * (CAP_DAC_OVERRIDE ignores the mode) /proc/sys is used, which procfs refuses even to root (EACCES).
 */
function readOnlyDir(): { dir: string; how: string } {
  const dir = path.join(tmp, 'ro');
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o555);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    return { dir, how: 'chmod 0o555' };
  }
  return { dir: '/proc/sys', how: '/proc/sys (running as root: chmod does not stop writes)' };
}

describe('output folder checks', () => {
  it('a read-only folder is E_IO naming the path, before anything is written', async () => {
    const { dir, how } = readOnlyDir();
    const file = path.join(dir, 'out.png');
    const e = await image().save(file).catch((x: unknown) => x);
    expect(e, how).toBeInstanceOf(IoError);
    expect((e as IoError).code).toBe('E_IO');
    expect((e as IoError).message).toContain(file);
    expect((e as IoError).message).toMatch(/not writable: .*\((EACCES|EROFS|EPERM)\)/);
    expect(fs.existsSync(file)).toBe(false);
  });

  it('a parent that is a file is E_IO (ENOTDIR)', async () => {
    const f = path.join(tmp, 'plain-file');
    fs.writeFileSync(f, 'x');
    const file = path.join(f, 'sub', 'out.png');
    await expect(image().save(file)).rejects.toMatchObject({ code: 'E_IO', message: expect.stringMatching(/a parent of the path is a file, not a folder \(ENOTDIR\)/) });
    await expect(checkOutputDir(f)).rejects.toMatchObject({ code: 'E_IO', message: expect.stringContaining('is a file, not a folder') });
  });

  it('a missing folder is created, with its parents', async () => {
    const file = path.join(tmp, 'a', 'b', 'c', 'out.png');
    await image().save(file);
    expect(fs.readFileSync(file).subarray(1, 4).toString()).toBe('PNG');
    // no temporary file left next to it
    expect(fs.readdirSync(path.dirname(file))).toEqual(['out.png']);
  });

  it('a failed write (ENOSPC) leaves no partial file and keeps an existing one', async () => {
    const file = path.join(tmp, 'full', 'out.png');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const failing = async (t: string, d: Uint8Array) => {
      fs.writeFileSync(t, d.subarray(0, d.length >> 1)); // half written, then the disk is full
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    const png = await image().toPNG();
    const e = await writeAtomicInternal(file, png, failing).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IoError);
    expect((e as IoError).message).toBe(`cannot write ${JSON.stringify(file)}: no space left on device (ENOSPC)`);
    expect(fs.readdirSync(path.dirname(file))).toEqual([]);
    // an earlier image at that path survives a failed overwrite
    fs.writeFileSync(file, 'old');
    await expect(writeAtomicInternal(file, png, failing)).rejects.toMatchObject({ code: 'E_IO' });
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['out.png']);
    await writeFileAtomic(file, png);
    expect(fs.readFileSync(file).equals(png)).toBe(true);
  });

  it('/dev/full: a real ENOSPC from the kernel is E_IO and leaves nothing', async () => {
    if (!fs.existsSync('/dev/full')) return;
    const file = path.join(tmp, 'devfull', 'out.png');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // the temporary file's bytes go to /dev/full: the write fails with the kernel's ENOSPC
    const viaDevFull = async (_t: string, d: Uint8Array) => { fs.writeFileSync('/dev/full', d); };
    await expect(writeAtomicInternal(file, await image().toPNG(), viaDevFull)).rejects.toMatchObject({
      code: 'E_IO', message: expect.stringContaining('(ENOSPC)'),
    });
    expect(fs.readdirSync(path.dirname(file))).toEqual([]);
  });

  it('the CLI check: folders, extensions', async () => {
    await checkOutput(path.join(tmp, 'cli-new') + path.sep);
    expect(fs.statSync(path.join(tmp, 'cli-new')).isDirectory()).toBe(true);
    await checkOutput(path.join(tmp, 'cli-new2', 'x.webp'));
    await checkOutput(path.join(tmp, 'cli-new3', 'x'), 2);
    await expect(checkOutput(path.join(tmp, 'x.gif'))).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringContaining('--out') });
  });
});

interface Run { code: number; stdout: string; stderr: string; ms: number }
function cli(...args: string[]): Promise<Run> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : 1) : 0;
      resolve({ code, stdout, stderr: stderr.split('\n').filter((l) => !l.startsWith('npm warn')).join('\n').trim(), ms: performance.now() - t0 });
    });
  });
}

describe('CLI generate: --out is checked before the model loads', () => {
  it('an unwritable --out is error [E_IO] and no model is loaded', async () => {
    const f = path.join(tmp, 'cli-file');
    fs.writeFileSync(f, 'x');
    const out = path.join(f, 'out.png');
    const r = await cli('generate', '--model', fixture('models', 'tiny-sd15'), '--prompt', 'x', '--steps', '1', '--out', out, '--no-progress');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^error \\[E_IO\\]: cannot write ${JSON.stringify(out).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
    expect(r.stderr).not.toContain('Loading');
    expect(r.stdout).toBe('');
  });

  it('a read-only --out folder is error [E_IO] before loading', async () => {
    const { dir } = readOnlyDir();
    const r = await cli('generate', '--model', '/nonexistent/model', '--prompt', 'x', '--out', dir + path.sep, '--no-progress');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error \[E_IO\]: .*not writable/);
    expect(r.stderr).not.toContain('Loading');
  });

  it('a missing --out folder is created and the image written there', async () => {
    const out = path.join(tmp, 'cli-made', 'deep', 'img.png');
    const r = await cli('generate', '--model', fixture('models', 'tiny-sd15'), '--prompt', 'x', '--steps', '1', '--width', '64', '--height', '64', '--seed', '3', '--out', out, '--no-progress');
    expect(r.stderr).toContain('Loading');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(out);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['img.png']);
  });
});
