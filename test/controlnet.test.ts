/**
 * ControlNetModel (native/core/models/controlnet_model) against the diffusers 0.30.3 goldens
 * `controlnet_model_b2_8x8` of tiny-sd15-controlnet and tiny-sdxl-controlnet: the down/mid residuals
 * (normal and guess mode), and the UNet fed with them (down_block_additional_residuals).
 * Tolerance: single model calls atol = rtol = 1e-4 (fixtures/README.md).
 */
import { describe, it, expect, afterAll } from 'vitest';
import path from 'node:path';
import { testingAddon as addon } from '../lib/native.js';
import { native } from '../lib/errors.js';
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
