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
import { canny } from '../lib/canny.js';
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

  it('--control-preprocess canny turns the photo into its edge map first: the same image as passing canny()\'s map, Module: canny', async () => {
    // a photo-like control image: a bright disc on a gradient
    const w = 32, h = 32, photo = path.join(tmp, 'photo.png');
    const px = new Uint8Array(w * h * 3).map((_, i) => {
      const p = Math.floor(i / 3), x = p % w, y = Math.floor(p / w);
      return (x - 16) ** 2 + (y - 16) ** 2 < 64 ? 240 : 8 * (x >> 2);
    });
    await sharp(Buffer.from(px), { raw: { width: w, height: h, channels: 3 } }).png().toFile(photo);
    const edges = await canny(photo, { lowThreshold: 50, highThreshold: 120 });
    const on = edges.data.filter((v) => v === 255).length;
    expect(on).toBeGreaterThan(3 * 20); // the disc's rim: a real edge map, not an empty one
    expect(on).toBeLessThan(edges.data.length / 2);
    const map = path.join(tmp, 'edges.png');
    await sharp(edges.data, { raw: { width: edges.width, height: edges.height, channels: 3 } }).png().toFile(map);
    const cn = fixture('models', 'tiny-sd15-controlnet');
    const common = ['generate', '-m', fixture('models', 'tiny-sd15'), '-p', 'a coin', '--steps', '2', '--seed', '3', '--no-progress', '--controlnet', cn];
    const a = path.join(tmp, 'pre.png'), b = path.join(tmp, 'map.png');
    const r1 = await cli(...common, '--control-image', photo, '--control-preprocess', 'canny', '--canny-low', '50', '--canny-high', '120', '-o', a);
    expect(r1.code, r1.stderr).toBe(0);
    const r2 = await cli(...common, '--control-image', map, '-o', b);
    expect(r2.code, r2.stderr).toBe(0);
    const [ra, rb] = await Promise.all([a, b].map((f) => sharp(f).raw().toBuffer()));
    expect(Buffer.compare(ra, rb)).toBe(0);
    expect(readPngText(fs.readFileSync(a)).parameters).toContain('ControlNet 0: "Module: canny, Model: tiny-sd15-controlnet,');
    expect(readPngText(fs.readFileSync(b)).parameters).toContain('ControlNet 0: "Module: none,');
    // thresholds without the preprocessor are refused
    const r3 = await cli(...common, '--control-image', photo, '--canny-low', '50', '-o', path.join(tmp, 'y.png'));
    expect(r3.code).toBe(1);
    expect(r3.stderr).toContain('--canny-low / --canny-high need --control-preprocess canny');
  }, 240_000);

  it('a --controlnet without its --control-image is E_INVALID_ARGUMENT, exit 1', async () => {
    const r = await cli('generate', '-m', fixture('models', 'tiny-sd15'), '-p', 'x', '--steps', '1', '--no-progress',
      '--controlnet', fixture('models', 'tiny-sd15-controlnet'), '-o', path.join(tmp, 'x.png'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_INVALID_ARGUMENT');
    expect(r.stderr).toContain('1 --controlnet, 0 --control-image');
  }, 120_000);
});
