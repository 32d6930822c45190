/**
 * The addon contract (types/native.ts, types/addon/*.ts) mirrors what the addon exports: every
 * binding is declared, nothing is declared that the addon lacks, lib/ calls no test-only binding,
 * handles are branded per class, and the addon itself refuses incomplete requests and handles of
 * another kind — after which the pipeline keeps working.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testingAddon } from '../lib/native.js';
import {
  AutoPipelineForInpainting, AutoPipelineForText2Image, StableDiffusionPipeline, StableDiffusionXLPipeline,
} from '../lib/index.js';
import { fixture } from './helpers/fixtures.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const typesDir = path.join(repo, 'types', 'addon');

/** Method names declared in the interfaces of types/addon/*.ts, split by `…TestingAddon` or not. */
function declared(): { lib: Set<string>; testing: Set<string> } {
  const lib = new Set<string>(), testing = new Set<string>();
  for (const f of fs.readdirSync(typesDir)) {
    const src = fs.readFileSync(path.join(typesDir, f), 'utf8');
    for (const m of src.matchAll(/export interface (\w+Addon) \{([\s\S]*?)\n\}/g)) {
      const into = m[1].endsWith('TestingAddon') ? testing : lib;
      for (const n of m[2].matchAll(/^ {2}(\w+)\(/gm)) into.add(n[1]);
    }
  }
  return { lib, testing };
}

describe('the addon contract', () => {
  it('declares exactly the bindings the addon exports, test-only ones in TestingAddon', () => {
    const { lib, testing } = declared();
    const exported = new Set(Object.keys(testingAddon()).filter((k) => typeof (testingAddon() as never)[k] === 'function'));
    expect(lib.size).toBeGreaterThan(40);
    expect([...lib].filter((n) => testing.has(n))).toEqual([]);
    expect([...exported].filter((n) => !lib.has(n) && !testing.has(n)).sort()).toEqual([]);
    expect([...lib, ...testing].filter((n) => !exported.has(n)).sort()).toEqual([]);
    // the twin SDXL bindings are gone: one set dispatches on the handle
    for (const gone of ['loadPipelineXl', 'generateXl', 'pipelineXlInfo', 'disposePipelineXl', 'encodeTextXl', 'livePipelinesXl']) {
      expect(exported.has(gone), gone).toBe(false);
    }
  });

  it('lib/ calls no test-only binding and probes no binding at run time', () => {
    const { testing } = declared();
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name)); else if (e.name.endsWith('.ts')) files.push(path.join(d, e.name));
      }
    };
    walk(path.join(repo, 'lib'));
    const offences: string[] = [];
    for (const f of files) {
      const src = fs.readFileSync(f, 'utf8');
      for (const n of testing) if (new RegExp(`\\.${n}\\(`).test(src)) offences.push(`${path.relative(repo, f)} calls ${n}`);
      if (/typeof\s+(a|addon\(\))\.\w+\s*===/.test(src)) offences.push(`${path.relative(repo, f)} probes the addon`);
    }
    expect(offences).toEqual([]);
    expect(fs.readFileSync(path.join(repo, 'types', 'native.ts'), 'utf8')).not.toMatch(/\[key: string\]/);
  });

  it('the types refuse a handle of another kind and an incomplete request (tsc, @ts-expect-error)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-contract-'));
    try {
      const rel = path.join(repo, 'types', 'native.js').split(path.sep).join('/');
      fs.writeFileSync(path.join(dir, 'probe.ts'), `
import type { NativeAddon, TestingAddon, VaeHandle, SdPipelineHandle, NativeGenerateRequest } from '${rel}';
declare const a: NativeAddon;
declare const vae: VaeHandle;
declare const pipe: SdPipelineHandle;
declare const req: NativeGenerateRequest;
// @ts-expect-error a VAE handle is not a pipeline handle
a.pipelineInfo(vae);
a.pipelineInfo(pipe);
// @ts-expect-error guidanceScale is required: lib/ sends complete requests
const partial: NativeGenerateRequest = { ...req, guidanceScale: undefined };
// @ts-expect-error test-only bindings are not on NativeAddon
a.livePipelines();
declare const t: TestingAddon;
t.livePipelines();
// @ts-expect-error no index signature: unknown bindings do not type-check
a.noSuchBinding();
export { partial };
`);
      fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: [] },
        files: ['probe.ts'],
      }));
      const tsc = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
      const r = spawnSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toBe('');
      expect(r.status).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('the addon refuses what the contract forbids; the pipeline keeps working', () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => { pipe = await StableDiffusionPipeline.fromPretrained(fixture('models', 'tiny-sd15')); });
  afterAll(() => pipe?.dispose());

  it('a request without a required field is E_INVALID_ARGUMENT naming the field', async () => {
    const handle = (pipe as any).model.handle;
    const ids = { data: new BigInt64Array(77).fill(49407n), shape: [1, 77] };
    const complete = {
      inputIds: ids, numImagesPerPrompt: 1, numInferenceSteps: 1, guidanceScale: 1, height: 64, width: 64, seed: 0, clipSkip: 0,
      eta: 0, outputType: 'latent' as const, schedulerName: 'PNDMScheduler', schedulerConfig: { ...pipe.scheduler.config }, loraScale: 1,
    };
    for (const key of ['guidanceScale', 'numInferenceSteps', 'loraScale', 'clipSkip', 'outputType'] as const) {
      const { [key]: _drop, ...partial } = complete;
      let err: any;
      try { await testingAddon().generate(handle, partial as never, undefined, undefined); } catch (e) { err = e; }
      expect(err?.code, key).toBe('E_INVALID_ARGUMENT');
      expect(err?.message).toContain(`request.${key}`);
    }
    const r = await testingAddon().generate(handle, complete, undefined, undefined);
    expect(r.latents!.shape).toEqual([1, 4, 32, 32]);
    const { images } = await pipe.generate({ prompt: 'a cat', numInferenceSteps: 1, seed: 1 });
    expect(images).toHaveLength(1);
  });
});

describe('AutoPipeline (diffusers auto_pipeline.py): model_index.json picks SD or SDXL', () => {
  it('text2image: tiny-sd15 → StableDiffusionPipeline, tiny-sdxl → StableDiffusionXLPipeline; inpainting refuses SDXL', async () => {
    const sd = await AutoPipelineForText2Image.fromPretrained(fixture('models', 'tiny-sd15'));
    const xl = await AutoPipelineForText2Image.fromPretrained(fixture('models', 'tiny-sdxl'));
    try {
      expect(sd).toBeInstanceOf(StableDiffusionPipeline);
      expect(xl).toBeInstanceOf(StableDiffusionXLPipeline);
      expect(xl.info.family).toBe('sdxl');
    } finally {
      sd.dispose();
      xl.dispose();
    }
    await expect(AutoPipelineForInpainting.fromPretrained(fixture('models', 'tiny-sdxl')))
      .rejects.toMatchObject({ code: 'E_UNSUPPORTED_MODEL', message: expect.stringContaining('SDXL inpainting') });
  });
});
