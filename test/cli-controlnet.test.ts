// `sd-native generate --controlnet … --control-image …` (lib/cli.ts) on the tiny fixture models:
// a run that writes the A1111 parameters of the ControlNet unit, and the pairing error.
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { readPngText } from '../lib/image.js';
import { fixture } from './helpers/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-cli-cn-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('sd-native generate with ControlNets', () => {
  it('--controlnet dir:scale with --control-image runs and records the unit in the PNG parameters', async () => {
    const control = path.join(tmp, 'control.png');
    const w = 32, h = 24;
    await sharp(Buffer.from(new Uint8Array(w * h * 3).map((_, i) => (i * 29) % 256)), { raw: { width: w, height: h, channels: 3 } }).png().toFile(control);
    const out = path.join(tmp, 'out.png');
    const cn = fixture('models', 'tiny-sd15-controlnet');
    const r = await cli('generate', '-m', fixture('models', 'tiny-sd15'), '-p', 'a house', '--steps', '2', '--seed', '1',
      '--controlnet', `${cn}:0.7`, '--controlnet', cn, '--control-image', control, '--control-image', control,
      '--control-start', '0.25', '--guess-mode', '--no-progress', '-o', out);
    expect(r.code, r.stderr).toBe(0);
    const text = readPngText(fs.readFileSync(out)).parameters;
    expect(text).toContain('Size: 32x24');
    expect(text).toContain('ControlNet 0: "Module: none, Model: tiny-sd15-controlnet, Weight: 0.7, Resize Mode: Just Resize, Guidance Start: 0.25, Guidance End: 1.0, Pixel Perfect: False, Control Mode: ControlNet is more important"');
    expect(text).toContain('ControlNet 1: "Module: none, Model: tiny-sd15-controlnet, Weight: 1.0,');
  }, 120_000);

  it('a --controlnet without its --control-image is E_INVALID_ARGUMENT, exit 1', async () => {
    const r = await cli('generate', '-m', fixture('models', 'tiny-sd15'), '-p', 'x', '--steps', '1', '--no-progress',
      '--controlnet', fixture('models', 'tiny-sd15-controlnet'), '-o', path.join(tmp, 'x.png'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_INVALID_ARGUMENT');
    expect(r.stderr).toContain('1 --controlnet, 0 --control-image');
  }, 120_000);
});
