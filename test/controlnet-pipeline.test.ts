/**
 * The ControlNet pipelines against goldens/tiny-sd15-controlnet and goldens/tiny-sdxl-controlnet
 * (fixtures/README.md "How diffusers 0.30.3 runs a ControlNet"): every controlnet_pipeline case —
 * txt2img, guess mode, the guidance window, two images per prompt, MultiControlNet, img2img,
 * inpainting with a 4-channel UNet, SDXL — final latents (relative error < 1e-4 of max|ref|) and
 * uint8 pixels (±1 on < 1%); and the ControlNet call recorded in each golden (controlnet0_*),
 * replayed through ControlNetModel (atol = rtol = 1e-4).
 */
import { describe, it, expect, afterAll } from 'vitest';
import path from 'node:path';
import {
  ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionControlNetImg2ImgPipeline,
  StableDiffusionControlNetInpaintPipeline, StableDiffusionXLControlNetPipeline, ControlNetPipelineBase, formatA1111Parameters, Generator,
} from '../lib/index.js';
import { testingAddon as addon } from '../lib/native.js';
import { native } from '../lib/errors.js';
import {
  allClose, fixture, goldenGenerateOptions, loadCases, loadGolden, maxAbs, maxAbsDiff, uint8Report, type GoldenCase,
} from './helpers/fixtures.js';
import type { TensorData } from '../types/native.js';

const SETS = ['tiny-sd15-controlnet', 'tiny-sdxl-controlnet'] as const;
const CLASSES: Record<string, any> = {
  StableDiffusionControlNetPipeline, StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetInpaintPipeline,
  StableDiffusionXLControlNetPipeline,
};
const controlnetDir = (set: string): string => path.resolve(fixture('goldens', set), loadCases(set).raw.controlnet_dir);
const disposables: { dispose(): void }[] = [];
const worst: Record<string, Record<string, number>> = {};
afterAll(() => {
  for (const d of disposables.reverse()) d.dispose();
  console.log('worst errors per case', JSON.stringify(worst, null, 1));
});

/** A golden uint8 control image ([H, W, 3] RGB or [H, W] 'L', replicated as PIL convert("RGB") does) as a raw input. */
function rawImage(t: TensorData<any>) {
  const [h, w] = t.shape;
  const src = t.data as Uint8Array;
  const data = t.shape.length === 3 ? new Uint8Array(src) : new Uint8Array(h * w * 3).map((_, i) => src[Math.floor(i / 3)]);
  return { data, width: w, height: h, channels: 3 as const };
}

/** The generate options of a controlnet_pipeline case. */
function caseOptions(c: GoldenCase, g: Record<string, TensorData<any>>, nets: number) {
  const p = c.params;
  const o: Record<string, any> = goldenGenerateOptions(p, g);
  const images = nets === 1 ? [rawImage(g.control_image_uint8)] : [0, 1].map((k) => rawImage(g[`control_image_uint8_${k}`]));
  const imageKey = p.pipeline.includes('Img2Img') || p.pipeline.includes('Inpaint') ? 'controlImage' : 'image';
  o[imageKey] = nets === 1 ? images[0] : images;
  if (p.controlnet_conditioning_scale !== undefined) o.controlnetConditioningScale = p.controlnet_conditioning_scale;
  if (p.guess_mode) o.guessMode = true;
  o.controlGuidanceStart = p.control_guidance_start;
  o.controlGuidanceEnd = p.control_guidance_end;
  if (p.pipeline.includes('Img2Img')) { delete o.height; delete o.width; }
  return o;
}

for (const set of SETS) {
  const { modelDir, cases } = loadCases(set);
  describe(`ControlNet pipelines vs diffusers: ${set}`, () => {
    for (const c of cases.filter((x) => x.kind === 'controlnet_pipeline')) {
      it(`${c.name}: final latents, pixels and the recorded ControlNet call`, async () => {
        const p = c.params;
        const g = await loadGolden(set, c.file);
        const nets = String(p.controlnet).startsWith('MultiControlNetModel') ? 2 : 1;
        const controlnets: ControlNetModel[] = [];
        for (let k = 0; k < nets; k++) {  // the multi case loads the same ControlNet twice (two instances)
          controlnets.push(await ControlNetModel.fromPretrained(controlnetDir(set)));
        }
        disposables.push(...controlnets);
        const Cls = CLASSES[p.pipeline];
        const pipe: ControlNetPipelineBase & { generate(o: any): Promise<any> } =
          await Cls.fromPretrained(modelDir, { controlnet: nets === 1 ? controlnets[0] : controlnets });
        disposables.push(pipe);
        pipe.setScheduler(p.scheduler, p.scheduler_overrides ?? {});
        const errs: Record<string, number> = (worst[`${set}/${c.name}`] = {});

        // the ControlNet call recorded at step controlnet0_step, replayed on our model
        for (let k = 0; k < nets; k++) {
          const pre = nets === 1 ? 'controlnet0_' : `controlnet0_net${k}_`;
          const added = g[`${pre}added_text_embeds`] ? { textEmbeds: g[`${pre}added_text_embeds`], timeIds: g[`${pre}added_time_ids`] } : {};
          const r = await native(() => addon().controlnetForward(controlnets[k].nativeHandle(), {
            sample: g[`${pre}sample`], timestep: g[`${pre}timestep`], encoderHiddenStates: g[`${pre}encoder_hidden_states`],
            controlnetCond: g[`${pre}cond`], conditioningScale: Number(g[`${pre}conditioning_scale`].data[0]),
            guessMode: !!p.guess_mode, ...added,
          }));
          let w = 0;
          for (const [j, d] of [...r.down, r.mid].entries()) {
            const ref = j < r.down.length ? g[`${pre}down_${j}`] : g[`${pre}mid`];
            const cmp = allClose(d, ref, 1e-4, 1e-4);
            w = Math.max(w, cmp.maxAbsDiff);
            expect(cmp.ok, `${pre} residual ${j}: max|diff| ${cmp.maxAbsDiff}`).toBe(true);
          }
          errs[`${pre}residuals max|diff|`] = w;
        }

        const opts = caseOptions(c, g, nets);
        const out = await pipe.generate(opts);
        expect(out.timesteps.length).toBe(p.denoising_steps_run);
        // the steps run (img2img: golden `timesteps` is the whole schedule, the strength cut keeps its tail)
        expect(out.timesteps).toEqual(Array.from(g.timesteps.data, Number).slice(-p.denoising_steps_run));
        if (g.initial_latents_randn) {  // the noise drawn (initial_latents_scaled records a fresh scheduler's init_noise_sigma)
          expect(maxAbsDiff(new Generator(opts.seed).randn(g.initial_latents_randn.shape), g.initial_latents_randn)).toBe(0);
        } else {
          const initRel = maxAbsDiff(out.initialLatents!, g.initial_latents) / maxAbs(g.initial_latents);
          errs['initial latents rel'] = initRel;
          expect(initRel).toBeLessThan(1e-4);
        }
        const rel = maxAbsDiff(out.latents!, g.final_latents) / maxAbs(g.final_latents);
        errs['final latents rel'] = rel;
        expect(rel, `final latents relative error ${rel}`).toBeLessThan(1e-4);
        const n = out.images.length;
        expect(n).toBe(g.image_uint8.shape[0]);
        const per = g.image_uint8.data.length / n;
        let worstPx = 0, fraction = 0;
        out.images.forEach((img: any, i: number) => {
          const ref = { data: (g.image_uint8.data as Uint8Array).subarray(i * per, (i + 1) * per), shape: g.image_uint8.shape.slice(1) };
          const r = uint8Report(img.data, ref);
          worstPx = Math.max(worstPx, r.worst);
          fraction = Math.max(fraction, r.fraction);
        });
        errs['uint8 worst'] = worstPx;
        errs['uint8 off fraction'] = fraction;
        expect(worstPx).toBeLessThanOrEqual(1);
        expect(fraction).toBeLessThan(0.01);
        // the A1111 parameters name every ControlNet unit
        const text = formatA1111Parameters(out.images[0].parameters);
        for (let k = 0; k < nets; k++) {
          expect(text).toContain(`ControlNet ${k}: "Module: none, Model: ${path.basename(controlnetDir(set))}, Weight: `);
        }
      });
    }
  });
}
