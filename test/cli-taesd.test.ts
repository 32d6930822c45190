// The CLI's --vae and --preview (TAESD / latent2rgb) flags on the tiny fixtures.
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { AutoencoderTiny, StableDiffusionPipeline } from '../lib/index.js';
import { previewOption } from '../lib/cli.js';
import { fixture } from './helpers/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-cli-taesd-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const model = fixture('models', 'tiny-sd15');
const taesdDir = fixture('models', 'tiny-taesd');

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function pixels(file: string): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

const args = ['generate', '--model', model, '--prompt', 'a red sports car', '--steps', '3', '--seed', '5',
  '--width', '64', '--height', '64', '--scheduler', 'EulerDiscreteScheduler', '--no-progress', '--threads', '2'];

describe('sd-native generate --vae / --preview', () => {
  it('--vae <AutoencoderTiny folder> decodes with TAESD: the same pixels as the library with { vae }', async () => {
    const out = path.join(tmp, 'vae', 'out.png');
    const r = await cli(...args, '--vae', taesdDir, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    const pipe = await StableDiffusionPipeline.fromPretrained(model, { vae: await AutoencoderTiny.fromPretrained(taesdDir) });
    try {
      pipe.setScheduler('EulerDiscreteScheduler');
      const ref = (await pipe.generate({ prompt: 'a red sports car', numInferenceSteps: 3, seed: 5, width: 64, height: 64 })).images[0];
      const got = await pixels(out);
      expect([got.width, got.height]).toEqual([64, 64]);
      expect(Buffer.compare(got.data, ref.data)).toBe(0);
    } finally {
      pipe.dispose();
    }
  });

  it('--preview latent2rgb and taesd:<dir> leave preview.png (latest preview) next to the output, no temporary file', async () => {
    for (const [spec, size] of [['latent2rgb', 32], [`taesd:${taesdDir}`, 256]] as const) {
      const dir = path.join(tmp, spec.split(':')[0]);
      const r = await cli(...args, '--preview', spec, '--out', path.join(dir, 'out.png'));
      expect(r.code, r.stderr).toBe(0);
      expect(fs.readdirSync(dir).sort()).toEqual(['out.png', 'preview.png']);
      const p = await pixels(path.join(dir, 'preview.png'));
      expect([p.width, p.height]).toEqual([size, size]);
    }
  });

  it('bad --preview / --preview-every are refused with exit code 2 or a typed message', async () => {
    expect(() => previewOption('taesd')).toThrow(/taesd:<AutoencoderTiny folder> or latent2rgb/);
    expect(() => previewOption('full')).toThrow(/--preview/);
    const r = await cli(...args, '--preview-every', '2', '--out', path.join(tmp, 'x.png'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--preview-every needs --preview/);
  });
});
