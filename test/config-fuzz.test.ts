/**
 * Property test (issue 19, reliability): a mutated config never crashes the process and never
 * surfaces as E_INTERNAL. For every numeric or numeric-list field of each tiny fixture config,
 * the field is set to 0, -1, a huge value (1e9), a string, or deleted — one mutation at a time —
 * and the component is loaded (UNet, VAE, CLIP text encoders, every scheduler + setTimesteps).
 * Each load either succeeds or throws an SdError with a typed code. A native crash (SIGFPE,
 * SIGSEGV, abort) would kill the vitest worker and fail the file; a huge value that passed
 * validation and tried to allocate would time the test out.
 *
 * Fixtures are never modified: each component folder is rebuilt in a temp dir with the weights
 * symlinked and only config.json rewritten.
 */
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoencoderKL, SdError, createScheduler, SCHEDULER_NAMES } from '../lib/index.js';
import { TextEncoder } from '../lib/internal/text_encoder.js';
import { native } from '../lib/errors.js';
import { testingAddon as addon } from '../lib/native.js';
import { fixture } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-cfgfuzz-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ALLOWED = new Set(['E_BAD_CONFIG', 'E_BAD_CHECKPOINT', 'E_UNSUPPORTED_MODEL', 'E_OUT_OF_MEMORY']);
const HUGE = 1e9;

type Json = Record<string, unknown>;
interface Mutation { label: string; config: Json }

const isNum = (v: unknown): v is number => typeof v === 'number';
const isNumList = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every(isNum);

/** One-field mutations of `config`: 0, -1, huge, a string, deleted (lists: every entry replaced, and the whole list). */
function mutations(config: Json): Mutation[] {
  const out: Mutation[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith('_')) continue;
    if (!isNum(value) && !isNumList(value)) continue;
    const set = (label: string, v: unknown) => out.push({ label: `${key} = ${label}`, config: { ...config, [key]: v } });
    for (const v of [0, -1, HUGE]) {
      if (isNumList(value)) {
        set(`[${v}, …]`, value.map(() => v));
        set(`[${v}, rest]`, [v, ...value.slice(1)]);
      } else {
        set(String(v), v);
      }
    }
    set('"12"', isNumList(value) ? value.map(() => '12') : '12');
    const deleted = { ...config };
    delete deleted[key];
    out.push({ label: `${key} deleted`, config: deleted });
  }
  return out;
}

/** A copy of a fixture component folder: weights symlinked, config.json replaced. */
function component(src: string, configName: string, config: Json, name: string): string {
  const dir = path.join(tmp, name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(src)) {
    if (f !== configName) fs.symlinkSync(path.join(src, f), path.join(dir, f));
  }
  fs.writeFileSync(path.join(dir, configName), JSON.stringify(config));
  return dir;
}

/** Runs `load`; a throw must be an SdError with an allowed code. Returns 'ok' or the code. */
async function outcome(label: string, load: () => Promise<void>): Promise<string> {
  try {
    await load();
    return 'ok';
  } catch (e) {
    if (!(e instanceof SdError) || !ALLOWED.has(e.code)) {
      throw new Error(`${label}: expected a load or an SdError in {${[...ALLOWED].join(', ')}}, got ` +
        `${e instanceof SdError ? e.code : String(e)}: ${(e as Error).message}`);
    }
    return e.code;
  }
}

const loaders: Record<string, (dir: string) => Promise<void>> = {
  unet: async (dir) => {
    const h = await native(() => addon().loadUNet(dir));
    addon().disposeUNet(h);
  },
  vae: async (dir) => {
    const v = await AutoencoderKL.fromPretrained(dir);
    v.dispose();
  },
  text_encoder: async (dir) => {
    const t = await TextEncoder.load(dir);
    t.dispose();
  },
};

const MODEL_COMPONENTS: Array<[model: string, comp: string, kind: keyof typeof loaders]> = [
  ['tiny-sd15', 'unet', 'unet'],
  ['tiny-sd15', 'vae', 'vae'],
  ['tiny-sd15', 'text_encoder', 'text_encoder'],
  ['tiny-sdxl', 'unet', 'unet'],
  ['tiny-sdxl', 'vae', 'vae'],
  ['tiny-sdxl', 'text_encoder', 'text_encoder'],
  ['tiny-sdxl', 'text_encoder_2', 'text_encoder'],
];

let total = 0;

describe('config property test: mutated fields load or fail typed, never crash', () => {
  for (const [model, comp, kind] of MODEL_COMPONENTS) {
    it(`${model}/${comp}/config.json`, async () => {
      const src = fixture('models', model, comp);
      const base = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8')) as Json;
      // the unmutated copy loads
      expect(await outcome('unmutated', () => loaders[kind](component(src, 'config.json', base, `${model}-${comp}`)))).toBe('ok');
      const ms = mutations(base);
      expect(ms.length).toBeGreaterThan(10);
      const codes = new Map<string, number>();
      for (const m of ms) {
        const dir = component(src, 'config.json', m.config, `${model}-${comp}`);
        const code = await outcome(`${model}/${comp}: ${m.label}`, () => loaders[kind](dir));
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
      total += ms.length;
      // most mutations contradict the weights or the ranges: they must be refused
      expect(codes.get('ok') ?? 0).toBeLessThan(ms.length);
    }, 60_000);
  }

  it('norm_num_groups 0 / -1 / not dividing the channels is E_BAD_CONFIG naming the file and field', async () => {
    const src = fixture('models', 'tiny-sd15', 'unet');
    const base = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8')) as Json;
    for (const groups of [0, -1, 7]) {
      const dir = component(src, 'config.json', { ...base, norm_num_groups: groups }, 'groups');
      const e = await native(() => addon().loadUNet(dir)).then(() => undefined, (err) => err);
      expect(e).toBeInstanceOf(SdError);
      expect(e.code).toBe('E_BAD_CONFIG');
      expect(e.message).toContain(path.join(dir, 'config.json'));
      expect(e.message).toContain('"norm_num_groups"');
    }
  });

  it('scheduler_config.json, for every scheduler (created and given timesteps)', () => {
    const base = JSON.parse(fs.readFileSync(fixture('models', 'tiny-sd15', 'scheduler', 'scheduler_config.json'), 'utf8')) as Json;
    // fields other schedulers read, so that their mutations are exercised too
    const full: Json = {
      ...base, solver_order: 2, original_inference_steps: 50, clip_sample_range: 1, sample_max_value: 1,
      dynamic_thresholding_ratio: 0.995, timestep_scaling: 10, lambda_min_clipped: -5,
    };
    let n = 0, refused = 0;
    for (const m of [...mutations(base), ...mutations(full)]) {
      for (const name of SCHEDULER_NAMES) {
        try {
          const s = createScheduler(name, m.config);
          s.setTimesteps(10);
        } catch (e) {
          if (!(e instanceof SdError) || !['E_BAD_CONFIG', 'E_UNSUPPORTED_MODEL', 'E_INVALID_ARGUMENT'].includes(e.code)) {
            throw new Error(`${name}: ${m.label}: ${e instanceof SdError ? e.code : String(e)}: ${(e as Error).message}`);
          }
          refused++;
        }
        n++;
      }
    }
    total += n;
    expect(n).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(0); // the mutations are seen: some are refused …
    for (const name of SCHEDULER_NAMES) { // … and a zero-length schedule always is, naming the field
      expect(() => createScheduler(name, { ...base, num_train_timesteps: 0 }), name)
        .toThrow(expect.objectContaining({ code: 'E_BAD_CONFIG', message: expect.stringContaining('num_train_timesteps') }));
    }
  });

  afterAll(() => {
    console.log(`config-fuzz: ${total} mutated loads`);
  });
});
