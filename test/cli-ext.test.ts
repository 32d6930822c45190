// CLI flags of the extension: --lora file[:weight], --lora-scale, --lora-dir, --embedding, --mask.
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixture } from './helpers/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-cli-ext-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('npx', ['tsx', 'lib/cli.ts', ...args], { cwd: root, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr: stderr.split('\n').filter((l) => !l.startsWith('npm warn')).join('\n').trim() });
    });
  });
}

describe('sd-native CLI: LoRA, embeddings, inpainting', () => {
  it('generate --help lists the flags', async () => {
    const r = await cli('generate', '--help');
    for (const f of ['--lora <file[:weight]>', '--lora-scale', '--lora-dir', '--embedding <file>', '--mask <file>', '--prompt-weighting <mode>']) expect(r.stdout).toContain(f);
  });

  it('--mask without --image is E_INVALID_ARGUMENT', async () => {
    const r = await cli('generate', '-m', fixture('models', 'tiny-sd15'), '-p', 'a cat', '--mask', 'm.png');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error \[E_INVALID_ARGUMENT\]: --mask needs --image/);
  });

  it('runs with a LoRA and an embedding', async () => {
    const out = path.join(tmp, 'out.png');
    const r = await cli('generate', '-m', fixture('models', 'tiny-sd15'), '-p', 'a (photo:1.2) of <my-token>', '--steps', '2',
      '--prompt-weighting', 'a1111',
      '--width', '32', '--height', '32', '--seed', '1', '--no-progress', '-o', out,
      '--lora', `${fixture('loras', 'tiny-sd15-kohya.safetensors')}:0.7`, '--lora-scale', '0.5',
      '--embedding', fixture('embeddings', 'my-token-diffusers.safetensors'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('72 UNet and 30 text-encoder modules');
    expect(r.stderr).toContain('tokens <my-token> <my-token>_1');
    expect(fs.existsSync(out)).toBe(true);
  }, 120_000);
});
