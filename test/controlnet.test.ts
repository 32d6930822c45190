/**
 * ControlNetModel (native/core/models/controlnet_model) against the diffusers 0.30.3 goldens
 * `controlnet_model_b2_8x8` of tiny-sd15-controlnet and tiny-sdxl-controlnet: the down/mid residuals
 * (normal and guess mode), and the UNet fed with them (down_block_additional_residuals).
 * Tolerance: single model calls atol = rtol = 1e-4 (fixtures/README.md).
 */
import { describe, it, expect, afterAll } from 'vitest';
import path from 'node:path';
import { testingAddon as addon } from '../lib/native.js';
import { native, SdError } from '../lib/errors.js';
import fs from 'node:fs';
import os from 'node:os';
import { ControlNetModel } from '../lib/controlnet_model.js';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../lib/safetensors.js';
import type { ControlNetHandle, UNetHandle, TensorData } from '../types/native.js';
import { fixture, loadCases, loadGolden, allClose, maxAbs, maxAbsDiff } from './helpers/fixtures.js';

const ATOL = 1e-4;
const RTOL = 1e-4;
const MODELS = ['tiny-sd15-controlnet', 'tiny-sdxl-controlnet'] as const;
const nets: ControlNetHandle[] = [];
const unets: UNetHandle[] = [];
afterAll(() => {
  for (const h of nets) addon().disposeControlNet(h);
  for (const h of unets) addon().disposeUNet(h);
});

/** The ControlNet folder of a golden set (cases.json controlnet_dir, relative to it). */
const controlnetDir = (model: string): string => path.resolve(fixture('goldens', model), loadCases(model).raw.controlnet_dir);

describe('ControlNetModel vs diffusers goldens (float32, atol=rtol=1e-4)', () => {
  for (const model of MODELS) {
    const { cases, modelDir } = loadCases(model);
    const c = cases.find((x) => x.kind === 'controlnet')!;
    for (const v of c.params.variants) {
      it(`${model} ${c.name} ${v.tag}: residuals and the UNet fed with them`, async () => {
        const g = await loadGolden(model, c.file);
        const net = await native(() => addon().loadControlNet(controlnetDir(model), { dtype: 'float32', device: 'cpu' }));
        nets.push(net);
        const unet = await native(() => addon().loadUNet(path.join(modelDir, 'unet')));
        unets.push(unet);
        const added = g.added_cond_text_embeds ? { textEmbeds: g.added_cond_text_embeds, timeIds: g.added_cond_time_ids } : {};
        const out = await native(() => addon().controlnetForward(net, {
          sample: g.sample, timestep: g[`${v.tag}_timestep`], encoderHiddenStates: g.encoder_hidden_states,
          controlnetCond: g.controlnet_cond, conditioningScale: v.conditioning_scale, guessMode: v.guess_mode, ...added,
        }));
        expect(out.down.length).toBe(v.n_down_residuals);
        let worst = 0;
        const check = (got: TensorData, ref: TensorData, name: string) => {
          expect(got.shape, name).toEqual(ref.shape);
          const r = allClose(got, ref, ATOL, RTOL);
          worst = Math.max(worst, r.maxAbsDiff);
          expect(r.ok, `${name}: max|diff| ${r.maxAbsDiff} (max|ref| ${maxAbs(ref)})`).toBe(true);
        };
        out.down.forEach((d, j) => check(d, g[`${v.tag}_down_${j}`], `down_${j}`));
        check(out.mid, g[`${v.tag}_mid`], 'mid');
        // the UNet with the golden residuals, and with ours
        const base = { sample: g.sample, timestep: g[`${v.tag}_timestep`], encoderHiddenStates: g.encoder_hidden_states, ...added };
        const withOurs = await native(() => addon().unetForward(unet, { ...base, downBlockAdditionalResiduals: out.down, midBlockAdditionalResidual: out.mid }));
        check(withOurs, g[`${v.tag}_unet_out`], 'unet_out');
        const without = await native(() => addon().unetForward(unet, base));
        check(without, g[`${v.tag}_unet_out_without_control`], 'unet_out_without_control');
        expect(maxAbsDiff(withOurs, without)).toBeGreaterThan(0.1);  // the residuals do change the output
        console.log(`${model} ${c.name} ${v.tag}: worst |diff| ${worst.toExponential(2)}`);
      });
    }
  }
});

describe('single-file ControlNet (original control_model.* layout)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sd-cn-single-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const model of MODELS) {
    it(`${model}: saved in the original layout and loaded back, the residuals are bit-identical`, async () => {
      const dir = controlnetDir(model);
      const file = path.join(tmp, `${model}.safetensors`);
      const n = await native(() => addon().controlnetSaveOriginalLayout(dir, file));
      const header = await readSafetensorsHeader(file);
      const names = header.tensors.map((t) => t.name);
      expect(names.length).toBe(n);
      for (const k of ['control_model.input_hint_block.0.weight', 'control_model.input_hint_block.2.weight',
        'control_model.zero_convs.0.0.weight', 'control_model.middle_block_out.0.bias', 'control_model.time_embed.0.weight',
        'control_model.input_blocks.0.0.weight', 'control_model.middle_block.1.proj_in.weight']) {
        expect(names).toContain(k);
      }
      expect(names.every((k) => k.startsWith('control_model.'))).toBe(true);
      const fromFile = await native(() => addon().loadControlNet(file, { dtype: 'float32', device: 'cpu', config: dir }));
      const fromDir = await native(() => addon().loadControlNet(dir, { dtype: 'float32', device: 'cpu' }));
      nets.push(fromFile, fromDir);
      const c = loadCases(model).cases.find((x) => x.kind === 'controlnet')!;
      const g = await loadGolden(model, c.file);
      const added = g.added_cond_text_embeds ? { textEmbeds: g.added_cond_text_embeds, timeIds: g.added_cond_time_ids } : {};
      const inputs = {
        sample: g.sample, timestep: g.t999_s1_timestep, encoderHiddenStates: g.encoder_hidden_states,
        controlnetCond: g.controlnet_cond, conditioningScale: 1, guessMode: false, ...added,
      };
      const a = await native(() => addon().controlnetForward(fromFile, inputs));
      const b = await native(() => addon().controlnetForward(fromDir, inputs));
      a.down.forEach((d, j) => expect(maxAbsDiff(d, b.down[j])).toBe(0));
      expect(maxAbsDiff(a.mid, b.mid)).toBe(0);
      expect(maxAbsDiff(a.mid, g.t999_s1_mid)).toBeLessThan(ATOL);
    });
  }

  it('unknown keys are E_BAD_CHECKPOINT naming them; a missing config is E_INVALID_ARGUMENT; the TS class loads files', async () => {
    const dir = controlnetDir('tiny-sd15-controlnet');
    const file = path.join(tmp, 'extra.safetensors');
    await native(() => addon().controlnetSaveOriginalLayout(dir, file));
    const w = await readSafetensors(file);
    w['control_model.output_blocks.0.0.in_layers.0.weight'] = { data: new Float32Array(2), shape: [2] };
    const bad = path.join(tmp, 'bad.safetensors');
    await writeSafetensors(bad, w);
    let e = await native(() => addon().loadControlNet(bad, { dtype: 'float32', device: 'cpu', config: dir })).catch((x) => x);
    expect(e).toBeInstanceOf(SdError);
    expect(e.code).toBe('E_BAD_CHECKPOINT');
    expect(e.message).toContain('control_model.output_blocks.0.0.in_layers.0.weight');
    e = await ControlNetModel.fromPretrained(file).catch((x) => x);
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.message).toContain('needs its diffusers config');
    const m = await ControlNetModel.fromPretrained(file, { config: path.join(dir, 'config.json') });
    expect(m.info).toMatchObject({ sdxl: false, crossAttentionDim: 32, conditioningDownscale: 2, parameters: 556880 });
    m.dispose();
  });
});
