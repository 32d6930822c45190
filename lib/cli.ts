#!/usr/bin/env node
/**
 * `sd-native` command line: `serve` (an image server: lib/server/), `generate` (text → image, or image → image with --image),
 * `info` (what a model is made of), `create-model` (a random-weight diffusers folder) and `convert`
 * (a diffusers folder → one original-layout single-file checkpoint), `pull` (download a Hugging Face
 * Hub model into huggingface_hub's cache) and `ls` (the cached models). `--model` / `info <model>`
 * also take Hub ids `org/name[@revision]`.
 * Errors print `error [E_CODE]: message` on stderr and exit with status 1.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import sharp from 'sharp';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { InvalidArgumentError, NativeLoadError, SdError, UnsupportedModelError, native } from './errors.js';
import { AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image } from './pipelines/auto_pipeline.js';
import { StableDiffusionInpaintPipeline } from './pipelines/stable_diffusion_inpaint.js';
import { StableDiffusionImg2ImgPipeline } from './pipelines/stable_diffusion_img2img.js';
import { StableDiffusionXLImg2ImgPipeline } from './pipelines/stable_diffusion_xl_img2img.js';
import type { GenerateResult } from './pipelines/pipeline_output.js';
import type { DiffusionPipeline } from './pipelines/pipeline_utils.js';
import { ControlNetModel } from './controlnet_model.js';
import { canny } from './canny.js';
import { StableDiffusionControlNetPipeline } from './pipelines/controlnet/pipeline_controlnet.js';
import { StableDiffusionControlNetImg2ImgPipeline } from './pipelines/controlnet/pipeline_controlnet_img2img.js';
import { StableDiffusionControlNetInpaintPipeline } from './pipelines/controlnet/pipeline_controlnet_inpaint.js';
import { StableDiffusionXLControlNetPipeline } from './pipelines/controlnet/pipeline_controlnet_sd_xl.js';
import type { LoadOptions, StepProgress } from './options.js';
import { DEFAULTS, SUPPORTED_SCHEDULERS } from './options.js';
import { A1111_SAMPLERS, resolveSchedulerName } from './schedulers.js';
import { createModel } from './create-model.js';
import { IMAGE_EXTENSIONS, checkOutputDir } from './image.js';
import { addon, packageRoot } from './native.js';
import { saveSingleFile } from './loaders/single_file.js';
import { downloadPipeline, hubCacheDir, listCachedModels, parseHubId, type HubDownloadProgress } from './loaders/hub.js';
import type { PipelineDtype } from '../types/native.js';
import type { ServeOptions } from './server/serve.js';

// =============================================================================================
// Formatting helpers
// =============================================================================================

/** tqdm's elapsed/remaining format: mm:ss, or h:mm:ss past an hour. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return hh > 0 ? `${hh}:${two(mm)}:${two(ss)}` : `${two(mm)}:${two(ss)}`;
}

/** tqdm's rate: "3.52it/s", or "2.10s/it" below one step per second. */
export function formatRate(steps: number, ms: number): string {
  if (steps <= 0 || ms <= 0) return '?it/s';
  const perSec = (steps * 1000) / ms;
  return perSec >= 1 ? `${perSec.toFixed(2)}it/s` : `${(1 / perSec).toFixed(2)}s/it`;
}

/** 1234567 → "1.23M". */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)}K`;
  return String(n);
}

/** Bytes → "3.44 GB" (powers of 1000, as diffusers' and HF's file sizes). */
export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)} kB`;
  return `${n} B`;
}

/** A number option parser naming the flag when the text is not a number. */
function numberArg(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || Number.isNaN(n)) {
      throw new InvalidArgumentError(`${flag} must be a number; received ${JSON.stringify(value)}`);
    }
    return n;
  };
}

/** `--scheduler-option key=value` (repeatable); the value is JSON when it parses, else a string. */
/** `--lora file[:weight]`, repeatable. */
function loraOption(value: string, previous: Array<{ file: string; weight: number }> = []): Array<{ file: string; weight: number }> {
  const m = /^(.*):(-?\d+(?:\.\d+)?(?:e-?\d+)?)$/i.exec(value);
  const file = m ? m[1] : value;
  const weight = m ? Number(m[2]) : 1;
  if (file.length === 0 || !Number.isFinite(weight)) throw new InvalidArgumentError(`--lora must be file[:weight]; received ${JSON.stringify(value)}`);
  return [...previous, { file, weight }];
}

/** `--controlnet <dir|file>[:scale]` (repeatable): the scale is the last `:number`, as for --lora. */
function controlnetOption(value: string, previous: Array<{ path: string; scale?: number }> = []): Array<{ path: string; scale?: number }> {
  const m = /^(.*):(-?\d+(?:\.\d+)?(?:e-?\d+)?)$/i.exec(value);
  const p = m ? m[1] : value;
  const scale = m ? Number(m[2]) : undefined;
  if (p.length === 0 || (scale !== undefined && !Number.isFinite(scale))) {
    throw new InvalidArgumentError(`--controlnet must be <dir|file>[:scale]; received ${JSON.stringify(value)}`);
  }
  return [...previous, { path: p, ...(scale !== undefined ? { scale } : {}) }];
}

/** `--preview taesd:<dir>` | `--preview latent2rgb`. */
export function previewOption(value: string): { kind: 'taesd' | 'latent2rgb'; dir?: string } {
  if (value === 'latent2rgb') return { kind: 'latent2rgb' };
  if (value.startsWith('taesd:') && value.length > 'taesd:'.length) return { kind: 'taesd', dir: value.slice('taesd:'.length) };
  throw new InvalidArgumentError(`--preview must be taesd:<AutoencoderTiny folder> or latent2rgb; received ${JSON.stringify(value)}`);
}

/**
 * `preview.png` next to the output, rewritten as previews arrive: each one is written to a
 * temporary file in the same folder and renamed over it (atomic: a viewer never reads half a PNG).
 * A preview arriving while the previous one is still being written is skipped.
 */
export function previewWriter(out: string): { write: (img: { data: Buffer; width: number; height: number }) => void; done: () => Promise<void>; file: string } {
  const folder = out.endsWith('/') || out.endsWith(path.sep) ? path.resolve(out) : path.dirname(path.resolve(out));
  const file = path.join(folder, 'preview.png');
  const tmp = path.join(folder, `.preview.png.${process.pid}.tmp`);
  let busy: Promise<void> | undefined;
  let failed: unknown;
  return {
    file,
    write(img) {
      if (busy || failed) return;
      busy = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(tmp)
        .then(() => rename(tmp, file))
        .catch((e: unknown) => { failed = e; return unlink(tmp).catch(() => undefined); })
        .finally(() => { busy = undefined; });
    },
    async done() {
      await busy;
      if (failed) log(`preview: could not write ${file}: ${(failed as Error).message}`);
    },
  };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function schedulerOption(value: string, previous: Record<string, unknown> = {}): Record<string, unknown> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`--scheduler-option must be key=value (e.g. use_karras_sigmas=true); received ${JSON.stringify(value)}`);
  const key = value.slice(0, eq);
  const raw = value.slice(eq + 1);
  let v: unknown;
  try { v = JSON.parse(raw); } catch { v = raw; }
  return { ...previous, [key]: v };
}

/** Output file names: `out` for one image, `out-1.png`, `out-2.png` … for several; a folder gets `<seed>-<i>.png`. */
export async function outputPaths(out: string, count: number, seed: number): Promise<string[]> {
  const st = await stat(out).catch(() => undefined);
  if (st?.isDirectory() || out.endsWith('/') || out.endsWith(path.sep)) {
    return Array.from({ length: count }, (_, i) => path.join(out, count === 1 ? `${seed}.png` : `${seed}-${i + 1}.png`));
  }
  if (count === 1) return [out];
  const ext = path.extname(out) || '.png';
  const base = path.extname(out) ? out.slice(0, -ext.length) : out;
  return Array.from({ length: count }, (_, i) => `${base}-${i + 1}${ext}`);
}

/**
 * Checks `--out` before anything loads: the folder the images go to exists or is created, and is
 * writable; a file name has an image extension (or none: `.png` is added for several images).
 * @throws IoError (`E_IO`) naming the path and the reason (read-only, a parent that is a file…).
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a file name with another extension.
 */
export async function checkOutput(out: string, count = 1): Promise<void> {
  const st = await stat(out).catch(() => undefined);
  const folder = st?.isDirectory() || out.endsWith('/') || out.endsWith(path.sep);
  if (!folder) {
    const ext = path.extname(out).toLowerCase();
    if (!(IMAGE_EXTENSIONS.includes(ext) || (ext === '' && count > 1))) {
      throw new InvalidArgumentError(`--out must be a folder or a .png, .jpg, .jpeg or .webp file; received ${JSON.stringify(out)}`);
    }
  }
  await checkOutputDir(folder ? path.resolve(out) : path.dirname(path.resolve(out)), out);
}

/** A progress bar on stderr (cli-progress; plain lines every 2 s when stderr is no terminal). */
function progressBar(format: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar({
    format, barCompleteChar: '\u2588', barIncompleteChar: ' ', barsize: 25, hideCursor: true,
    stream: process.stderr, clearOnComplete: false, noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 2000,
  }, cliProgress.Presets.shades_classic);
}

function loadOptionsOf(o: {
  device?: string; dtype?: string; variant?: string; threads?: number; configDir?: string; vae?: string;
  preview?: { kind: 'taesd' | 'latent2rgb'; dir?: string };
}): LoadOptions {
  const l: LoadOptions = {
    device: o.device, dtype: o.dtype as PipelineDtype | undefined, variant: o.variant, threads: o.threads, configDir: o.configDir,
  };
  if (o.vae !== undefined) l.vae = o.vae;
  if (o.preview?.dir !== undefined) l.previewDecoder = o.preview.dir;
  return l;
}

/**
 * The Hub part of `--model`: for an id (not a local path) the revision, a download bar on stderr
 * and Ctrl-C abort; nothing for local paths.
 */
async function hubLoadOptions(model: string, o: { revision?: string; progress?: boolean }, signal?: AbortSignal): Promise<{ options: LoadOptions; done: () => void }> {
  const local = await stat(model).catch(() => undefined);
  if (local || !parseHubId(model)) return { options: {}, done: () => undefined };
  const bar = o.progress === false ? undefined : downloadBar();
  return {
    options: { ...(o.revision !== undefined ? { revision: o.revision } : {}), onProgress: bar?.update, ...(signal ? { signal } : {}) },
    done: () => bar?.stop(),
  };
}

/** A cli-progress bar for Hub downloads (bytes, files, rate, ETA), as `generate`'s step bar. */
function downloadBar(): { update: (p: HubDownloadProgress) => void; stop: () => void } {
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(p: HubDownloadProgress) {
      if (!bar) {
        bar = progressBar('{percentage}%|{bar}| {done}/{totalText} [{files} files, {etaText}, {rate}]');
        bar.start(Math.max(p.bytesTotal, 1), 0, { done: '0 B', totalText: formatBytes(p.bytesTotal), files: '0/0', etaText: '?', rate: '? MB/s' });
      }
      bar.setTotal(Math.max(p.bytesTotal, 1));
      const remaining = p.bytesPerSecond > 0 ? ((p.bytesTotal - p.bytesDone) / p.bytesPerSecond) * 1000 : NaN;
      bar.update(p.bytesDone, {
        done: formatBytes(p.bytesDone), totalText: formatBytes(p.bytesTotal), files: `${p.filesDone}/${p.filesTotal}`,
        etaText: formatDuration(remaining), rate: `${formatBytes(Math.round(p.bytesPerSecond))}/s`,
      });
    },
    stop() { bar?.stop(); bar = undefined; },
  };
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

// =============================================================================================
// Commands
// =============================================================================================

interface GenerateCliOptions {
  model: string; prompt: string; negativePrompt?: string; steps?: number; guidance?: number;
  width?: number; height?: number; seed?: number; scheduler?: ReturnType<typeof resolveSchedulerName>; schedulerOption?: Record<string, unknown>;
  n?: number; clipSkip?: number; image?: string; initImage?: string; strength?: number;
  mask?: string; promptWeighting?: 'none' | 'a1111'; lora?: Array<{ file: string; weight: number }>; loraScale?: number; loraDir?: string; embedding?: string[];
  device?: string; dtype?: string; variant?: string; threads?: number; configDir?: string; revision?: string;
  vae?: string; preview?: { kind: 'taesd' | 'latent2rgb'; dir?: string }; previewEvery?: number;
  out: string; progress: boolean;
  controlnet?: Array<{ path: string; scale?: number }>; controlImage?: string[]; controlStart?: number; controlEnd?: number;
  guessMode?: boolean; controlnetConfig?: string; controlPreprocess?: 'canny'; cannyLow?: number; cannyHigh?: number;
}

/**
 * The ControlNet path of `generate`: each --controlnet (diffusers folder, or an original-layout file
 * with --controlnet-config) paired in order with a --control-image, run by the ControlNet pipeline of
 * the task (txt2img SD / SDXL, img2img, inpainting) sharing the loaded model's weights.
 */
async function generateControlled(
  pipe: DiffusionPipeline, o: GenerateCliOptions, common: Record<string, unknown>, clean: <T extends object>(x: T) => T,
): Promise<GenerateResult> {
  const nets = o.controlnet ?? [];
  const files = o.controlImage ?? [];
  if (nets.length === 0) throw new InvalidArgumentError('--control-image needs --controlnet');
  if (files.length !== nets.length) {
    throw new InvalidArgumentError(`each --controlnet needs its --control-image (paired in order): ${nets.length} --controlnet, ${files.length} --control-image`);
  }
  // --control-preprocess canny: the control images are photos, turned into edge maps first
  // (controlnet_aux's CannyDetector, lib/canny.ts), as A1111's "canny" module does
  const images: Array<string | Awaited<ReturnType<typeof canny>>> = o.controlPreprocess === 'canny'
    ? await Promise.all(files.map((f) => canny(f, { lowThreshold: o.cannyLow ?? 100, highThreshold: o.cannyHigh ?? 200 })))
    : files;
  const info = pipe.info;
  const mode = o.mask !== undefined ? 'inpaint' : o.image !== undefined ? 'img2img' : info.family === 'sdxl' ? 'xl' : 'txt2img';
  if (info.family === 'sdxl' && mode !== 'xl') throw new UnsupportedModelError('ControlNet img2img / inpainting runs SD 1.x/2.x models only (SDXL: text-to-image)');
  const models: ControlNetModel[] = [];
  try {
    for (const n of nets) {
      const m = await ControlNetModel.fromPretrained(n.path, { device: info.device, dtype: info.dtype as PipelineDtype, ...(o.controlnetConfig ? { config: o.controlnetConfig } : {}) });
      models.push(m);
      log(`ControlNet ${n.path}${n.scale !== undefined ? ` (scale ${n.scale})` : ''}`);
    }
    const cn: { generate(options: never): Promise<GenerateResult>; dispose(): void } = mode === 'inpaint'
      ? StableDiffusionControlNetInpaintPipeline.fromPipeline(pipe, { controlnet: models })
      : mode === 'img2img' ? StableDiffusionControlNetImg2ImgPipeline.fromPipeline(pipe, { controlnet: models })
        : mode === 'xl' ? StableDiffusionXLControlNetPipeline.fromPipeline(pipe, { controlnet: models })
          : StableDiffusionControlNetPipeline.fromPipeline(pipe, { controlnet: models });
    try {
      const scales = nets.map((n) => n.scale ?? DEFAULTS.controlnetConditioningScale[mode]);
      const control = clean({
        controlnetConditioningScale: scales, controlGuidanceStart: o.controlStart, controlGuidanceEnd: o.controlEnd,
        guessMode: o.guessMode,
      });
      const imageArg = images.length === 1 ? images[0] : images;
      // the images' parameters name the preprocessor of each unit (A1111's "Module")
      const withModule = (r: GenerateResult): GenerateResult => {
        if (o.controlPreprocess) for (const im of r.images) for (const u of im.parameters.controlnets ?? []) u.module = o.controlPreprocess;
        return r;
      };
      if (mode === 'inpaint') return withModule(await cn.generate(clean({ ...common, ...control, image: o.image!, maskImage: o.mask!, strength: o.strength, controlImage: imageArg }) as never));
      if (mode === 'img2img') return withModule(await cn.generate(clean({ ...common, ...control, image: o.image!, strength: o.strength, controlImage: imageArg }) as never));
      if (o.strength !== undefined) throw new InvalidArgumentError('--strength needs --image (img2img)');
      return withModule(await cn.generate({ ...common, ...control, image: imageArg } as never));
    } finally {
      cn.dispose();
    }
  } finally {
    for (const m of models) m.dispose();
  }
}

async function runGenerate(o: GenerateCliOptions): Promise<void> {
  const t0 = performance.now();
  if (o.initImage !== undefined) {
    if (o.image !== undefined) throw new InvalidArgumentError('give either --image or --init-image, not both');
    o.image = o.initImage;
  }
  if (o.mask !== undefined && o.image === undefined) throw new InvalidArgumentError('--mask needs --image (inpainting)');
  if (o.controlPreprocess !== undefined && o.controlnet === undefined) throw new InvalidArgumentError('--control-preprocess needs --controlnet and --control-image');
  if ((o.cannyLow !== undefined || o.cannyHigh !== undefined) && o.controlPreprocess !== 'canny') {
    throw new InvalidArgumentError('--canny-low / --canny-high need --control-preprocess canny');
  }
  // the task picks the AutoPipeline; the model's model_index.json (a single file: --config-dir's) picks SD or SDXL
  const Auto = o.mask !== undefined ? AutoPipelineForInpainting : o.image !== undefined ? AutoPipelineForImage2Image : AutoPipelineForText2Image;
  // the output folder is checked (created, writable) before the model loads: an unwritable --out
  // fails now, not after the generation
  await checkOutput(o.out, o.n ?? 1);
  log(`Loading ${o.model} ...`);
  const hub = await hubLoadOptions(o.model, o);
  let pipe;
  try {
    pipe = await Auto.fromPretrained(o.model, { ...loadOptionsOf(o), ...hub.options });
  } finally {
    hub.done();
  }
  const loadMs = performance.now() - t0;
  log(`Loaded ${pipe.info.className} (${pipe.info.family}) on ${pipe.info.device}, ${pipe.info.dtype} in ${(loadMs / 1000).toFixed(1)} s`);

  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted (SIGINT)'));
  process.once('SIGINT', onSigint);
  let bar: cliProgress.SingleBar | undefined;
  let lastStep = 0;
  try {
    for (const [i, l] of (o.lora ?? []).entries()) {
      const r = await pipe.loadLoraWeights(l.file, { adapterName: `lora_${i}`, weight: l.weight });
      log(`LoRA ${l.file} (weight ${l.weight}): ${r.unetModules} UNet and ${r.textEncoderModules + r.textEncoder2Modules} text-encoder modules`);
    }
    for (const e of o.embedding ?? []) log(`Embedding ${e}: tokens ${(await pipe.loadTextualInversion(e)).join(' ')}`);
    if (o.scheduler !== undefined || o.schedulerOption !== undefined) {
      // an A1111 sampler name brings its overrides (e.g. use_karras_sigmas); --scheduler-option wins
      pipe.setScheduler(o.scheduler?.scheduler ?? pipe.scheduler.name, { ...o.scheduler?.config, ...o.schedulerOption });
    }
    if (o.previewEvery !== undefined && o.preview === undefined) throw new InvalidArgumentError('--preview-every needs --preview');
    const preview = o.preview ? previewWriter(o.out) : undefined;
    const onStep = (p: StepProgress) => {
      lastStep = p.step;
      if (preview && p.previewImages?.[0]) preview.write(p.previewImages[0]);
      if (!o.progress) return;
      if (!bar) {
        bar = progressBar('{percentage}%|{bar}| {value}/{total} [{elapsedText}<{etaText}, {rate}]');
        bar.start(p.numSteps, 0, { elapsedText: '00:00', etaText: '?', rate: '?it/s' });
      }
      const remaining = p.step > 0 ? (p.elapsedMs / p.step) * (p.numSteps - p.step) : NaN;
      bar.update(p.step, {
        elapsedText: formatDuration(p.elapsedMs), etaText: formatDuration(remaining), rate: formatRate(p.step, p.elapsedMs),
      });
    };
    const common = {
      prompt: o.prompt, negativePrompt: o.negativePrompt, numInferenceSteps: o.steps, guidanceScale: o.guidance,
      width: o.width, height: o.height, seed: o.seed, numImagesPerPrompt: o.n, clipSkip: o.clipSkip,
      loraScale: o.loraScale, loraDir: o.loraDir, promptWeighting: o.promptWeighting, onStep, signal: ac.signal,
      previews: o.preview?.kind, previewEvery: o.preview ? o.previewEvery : undefined,
    };
    // Drop undefined fields so that defaults apply.
    const clean = <T extends object>(x: T): T => Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as T;
    let result: GenerateResult;
    if (o.controlnet !== undefined || o.controlImage !== undefined) {
      result = await generateControlled(pipe, o, clean(common), clean);
    } else if (pipe instanceof StableDiffusionInpaintPipeline) {
      result = await pipe.generate(clean({ ...common, image: o.image!, maskImage: o.mask!, strength: o.strength }));
    } else if (pipe instanceof StableDiffusionImg2ImgPipeline || pipe instanceof StableDiffusionXLImg2ImgPipeline) {
      result = await pipe.generate(clean({ ...common, image: o.image!, strength: o.strength }));
    } else {
      if (o.strength !== undefined) throw new InvalidArgumentError('--strength needs --image (img2img)');
      result = await pipe.generate(clean(common));
    }
    bar?.stop();
    bar = undefined;
    await preview?.done();

    const files = await outputPaths(o.out, result.images.length, result.seed);
    for (let i = 0; i < files.length; i++) {
      await result.images[i].save(files[i]);
      process.stdout.write(`${files[i]}\n`);
    }
    const t = result.timings;
    log(`seed ${result.seed}, ${result.images[0]?.width}x${result.images[0]?.height}, ${pipe.scheduler.samplerName}, ` +
      `${lastStep} steps in ${(t.denoiseMs / 1000).toFixed(2)} s (${formatRate(lastStep, t.denoiseMs)}); ` +
      `total ${((performance.now() - t0) / 1000).toFixed(1)} s (load ${(loadMs / 1000).toFixed(1)} s, ` +
      `encode ${t.encodeMs.toFixed(0)} ms, decode ${t.decodeMs.toFixed(0)} ms)`);
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    await pipe[Symbol.asyncDispose]();
  }
}

async function runInfo(model: string, o: { device?: string; dtype?: string; configDir?: string; json?: boolean; revision?: string; variant?: string }): Promise<void> {
  const hub = await hubLoadOptions(model, o);
  let pipe;
  try {
    pipe = await AutoPipelineForText2Image.fromPretrained(model, { ...loadOptionsOf(o), ...hub.options });
  } finally {
    hub.done();
  }
  try {
    const info = pipe.info;
    if (o.json) {
      process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      return;
    }
    const lines = [
      `model       ${info.modelPath}`,
      `family      ${info.family} (${info.className})`,
      `device      ${info.device}, ${info.dtype}`,
      `default     ${info.defaultWidth}x${info.defaultHeight} (sample size ${info.sampleSize} × vae scale factor ${info.vaeScaleFactor})`,
      `scheduler   ${info.schedulerName} (${pipe.scheduler.samplerName})`,
      `tokenizers  ${info.tokenizerDirs.join(', ')}`,
      'components',
    ];
    const nameW = Math.max(...info.components.map((c) => c.name.length), 4);
    const classW = Math.max(...info.components.map((c) => c.className.length), 5);
    let params = 0;
    let bytes = 0;
    for (const c of info.components) {
      params += c.parameters;
      bytes += c.bytes;
      lines.push(`  ${c.name.padEnd(nameW)}  ${c.className.padEnd(classW)}  ${c.dtype.padEnd(8)}  ` +
        `${formatCount(c.parameters).padStart(8)} params  ${formatBytes(c.bytes).padStart(9)}`);
    }
    lines.push(`total       ${formatCount(params)} params, ${formatBytes(bytes)}`);
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await pipe[Symbol.asyncDispose]();
  }
}

type CreateModelCliOptions = { preset: 'sd15' | 'sd21' | 'sdxl'; scale: 'tiny' | 'full'; seed: number; out: string; dtype?: 'float32' | 'float16'; device?: string };

async function runCreateModel(o: CreateModelCliOptions): Promise<void> {
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) {
    throw new InvalidArgumentError(`--seed must be a non-negative integer; received ${o.seed}`);
  }
  const t0 = performance.now();
  const r = await createModel({ preset: o.preset, scale: o.scale, seed: o.seed, out: path.resolve(o.out), dtype: o.dtype, device: o.device });
  process.stdout.write(`${r.path}\n`);
  const total = Object.values(r.parameters).reduce((a, b) => a + b, 0);
  for (const [name, n] of Object.entries(r.parameters)) log(`  ${name.padEnd(16)} ${formatCount(n).padStart(8)} params`);
  log(`created ${o.preset} (${o.scale}, seed ${o.seed}): ${formatCount(total)} params in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

async function runPull(id: string, o: { variant?: string; revision?: string; progress: boolean; json?: boolean }): Promise<void> {
  if (!parseHubId(id)) throw new InvalidArgumentError(`pull needs a Hub model id org/name or org/name@revision; received ${JSON.stringify(id)}`);
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted (SIGINT)'));
  process.once('SIGINT', onSigint);
  const bar = o.progress ? downloadBar() : undefined;
  const t0 = performance.now();
  try {
    // pull asks the Hub which commit the revision is at even when a snapshot is cached (refresh)
    const r = await downloadPipeline(id, { variant: o.variant, revision: o.revision, onProgress: bar?.update, signal: ac.signal }, true);
    bar?.stop();
    process.stdout.write(`${r.path}\n`);
    log(`${r.repo}@${r.revision} = ${r.commit}: ${r.files.length} files, downloaded ${r.downloadedFiles} ` +
      `(${formatBytes(r.downloadedBytes)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
  }
}

async function runLs(o: { json?: boolean }): Promise<void> {
  const dir = hubCacheDir();
  const models = await listCachedModels(dir);
  if (o.json) {
    process.stdout.write(JSON.stringify({ cacheDir: dir, models }, null, 2) + '\n');
    return;
  }
  if (models.length === 0) {
    log(`no models in ${dir}`);
    return;
  }
  const w = Math.max(...models.map((m) => m.repo.length), 5);
  const lines = [`${'MODEL'.padEnd(w)}  ${'SIZE'.padStart(9)}  REVISIONS`];
  for (const m of models) {
    const revs = m.revisions.map((r) => `${r.commit.slice(0, 12)}${r.refs.length ? ` (${r.refs.join(', ')})` : ''} ${formatBytes(r.size)}`);
    lines.push(`${m.repo.padEnd(w)}  ${formatBytes(m.size).padStart(9)}  ${revs.join('; ')}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  log(`cache ${dir}: ${models.length} model${models.length === 1 ? '' : 's'}, ${formatBytes(models.reduce((a, m) => a + m.size, 0))}`);
}

// =============================================================================================
// Program
// =============================================================================================

/** The version in the package's package.json. */
function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** Builds the commander program (exported for tests and embedding). */
export function buildProgram(): Command {
  const program = new Command('sd-native')
    .description('Stable Diffusion inference on a native libtorch core')
    .version(packageVersion(), '-V, --version', 'print the sd-native version')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: () => { /* printed by main() as error [E_CODE]: … */ } });

  program.command('generate')
    .description('generate images from a prompt (text-to-image; image-to-image with --image)')
    .requiredOption('-m, --model <dir|file|id>', 'diffusers folder, single .safetensors checkpoint, Hugging Face Hub id org/name[@revision], or Hub file org/name/file.safetensors')
    .requiredOption('-p, --prompt <text>', 'the prompt')
    .option('--negative-prompt <text>', 'what to steer away from (default "")')
    .option('--steps <n>', `denoising steps, 1-1000 (default ${DEFAULTS.numInferenceSteps})`, numberArg('--steps'))
    .option('--guidance <scale>', `classifier-free guidance scale (default ${DEFAULTS.guidanceScale}; <= 1 disables it)`, numberArg('--guidance'))
    .option('--width <px>', 'image width, multiple of 8 (default: the model\'s)', numberArg('--width'))
    .option('--height <px>', 'image height, multiple of 8 (default: the model\'s)', numberArg('--height'))
    .option('--seed <n>', 'generator seed (default: random)', numberArg('--seed'))
    .option('--scheduler <name>', `a diffusers scheduler class (${SUPPORTED_SCHEDULERS.join(', ')}) or an AUTOMATIC1111 sampler ` +
      `name (${Object.keys(A1111_SAMPLERS).map((n) => `"${n}"`).join(', ')}); checked before the model loads`, resolveSchedulerName)
    .option('--scheduler-option <key=value>', 'scheduler config override, repeatable (e.g. use_karras_sigmas=true)', schedulerOption)
    .option('-n, --n <count>', `images per prompt, 1-64 (default ${DEFAULTS.numImagesPerPrompt})`, numberArg('--n'))
    .option('--clip-skip <n>', 'CLIP layers to skip (default none)', numberArg('--clip-skip'))
    .option('--image <file>', 'input image: image-to-image')
    .option('--init-image <file>', 'the same as --image (AUTOMATIC1111 naming)')
    .option('--strength <s>', `image-to-image / inpainting strength in [0, 1] (default ${DEFAULTS.img2imgStrength}; inpainting ${DEFAULTS.inpaintStrength}; SDXL ${DEFAULTS.xlImg2ImgStrength})`, numberArg('--strength'))
    .option('--mask <file>', 'inpainting mask for --image (white = repaint)')
    .option('--controlnet <dir|file[:scale]>', 'ControlNet (diffusers folder, or an original-layout .safetensors with --controlnet-config), ' +
      `repeatable, paired in order with --control-image; scale default ${DEFAULTS.controlnetConditioningScale.txt2img} ` +
      `(img2img ${DEFAULTS.controlnetConditioningScale.img2img}, inpainting ${DEFAULTS.controlnetConditioningScale.inpaint})`, controlnetOption)
    .option('--control-image <file>', 'control image of the ControlNet at the same position, repeatable', collect)
    .option('--control-start <f>', 'fraction of the steps where every ControlNet starts acting (default 0)', numberArg('--control-start'))
    .option('--control-end <f>', 'fraction of the steps where every ControlNet stops acting (default 1)', numberArg('--control-end'))
    .option('--guess-mode', 'ControlNet guess mode (diffusers guess_mode: the ControlNet sees the conditional half only)')
    .addOption(new Option('--control-preprocess <module>', 'turn each --control-image into a control map first: canny (OpenCV\'s Canny, as controlnet_aux\'s CannyDetector)').choices(['canny']))
    .option('--canny-low <t>', 'with --control-preprocess canny: the low hysteresis threshold (default 100)', numberArg('--canny-low'))
    .option('--canny-high <t>', 'with --control-preprocess canny: the high hysteresis threshold (default 200)', numberArg('--canny-high'))
    .option('--controlnet-config <file|dir>', 'single-file ControlNets: their diffusers config.json (or its folder)')
    .option('--lora <file[:weight]>', 'LoRA .safetensors (kohya/A1111 or diffusers; a path or a Hub file org/name/file.safetensors), repeatable', loraOption)
    .option('--lora-scale <s>', 'scale of all LoRAs for this run (default 1)', numberArg('--lora-scale'))
    .option('--lora-dir <dir>', 'folder for <lora:name:weight> prompt tags')
    .addOption(new Option('--prompt-weighting <mode>', "'a1111': (word:1.3) emphasis, BREAK, prompts over 75 tokens").choices(['none', 'a1111']))
    .option('--embedding <file>', 'textual-inversion embedding .safetensors (a path or a Hub file; token = file name or its key), repeatable', collect)
    .option('--device <device>', "'cpu' | 'cuda' | 'cuda:N'", 'cpu')
    .addOption(new Option('--dtype <dtype>', 'compute dtype').choices(['float32', 'float16', 'bfloat16']).default(DEFAULTS.dtype))
    .option('--variant <name>', 'weight file variant, e.g. fp16')
    .option('--threads <n>', 'CPU threads', numberArg('--threads'))
    .option('--config-dir <dir>', 'single files: a diffusers folder with configs and tokenizers')
    .option('--revision <rev>', 'Hub ids: branch, tag or commit (default main)')
    .option('--vae <dir|file>', 'decode with this VAE: a diffusers AutoencoderKL or AutoencoderTiny (TAESD) folder, or an original-layout VAE .safetensors (e.g. vae-ft-mse-840000-ema-pruned.safetensors)')
    .option('--preview <taesd:dir|latent2rgb>', 'write preview.png next to the output while denoising: TAESD decodes (taesd:<AutoencoderTiny folder>) or the weightless latent2rgb approximation', previewOption)
    .option('--preview-every <n>', 'with --preview: every n-th step (default 1)', numberArg('--preview-every'))
    .option('-o, --out <file>', 'output file (.png/.jpg/.webp) or folder; several images get -1, -2 … suffixes', 'output.png')
    .option('--no-progress', 'no progress bar')
    .action(async (opts: GenerateCliOptions) => { await runGenerate(opts); });

  program.command('serve')
    .description('run an image server: OpenAI /v1/images/*, AUTOMATIC1111 /sdapi/v1/*, jobs API with SSE, /metrics, a web page at /')
    .requiredOption('-m, --model <dir|file|id>', 'a model to load (diffusers folder, single .safetensors, or Hub id org/name[@revision]); repeatable, the first is the default', collect)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', numberArg('--port'), 7860)
    .option('--device <device>', "'cpu' | 'cuda' | 'cuda:N'", 'cpu')
    .addOption(new Option('--dtype <dtype>', 'compute dtype').choices(['float32', 'float16', 'bfloat16']).default(DEFAULTS.dtype))
    .option('--threads <n>', 'CPU threads', numberArg('--threads'))
    .option('--max-batch <n>', 'dynamic batching: most compatible requests run as one call', numberArg('--max-batch'), 1)
    .option('--batch-wait-ms <ms>', 'dynamic batching: how long a request waits for compatible ones', numberArg('--batch-wait-ms'), 0)
    .option('--max-body-mb <mb>', 'largest request body (JSON or multipart), MiB; larger ones get 413', numberArg('--max-body-mb'), 16)
    .option('--max-pixels <n>', 'largest width × height × images of one request (0: no cap); larger ones get 400', numberArg('--max-pixels'), 4 * 1024 * 1024)
    .option('--max-queue <n>', 'most jobs waiting; more get 503', numberArg('--max-queue'), 1000)
    .option('--preview-decoder <dir>', 'an AutoencoderTiny (TAESD) folder for live previews (default: AUTOMATIC1111\'s weightless latent2rgb)')
    .option('--preview-every <n>', 'a live preview every N steps', numberArg('--preview-every'), 1)
    .option('--redis <url>', 'scale out on Redis (BullMQ): redis://host:6379')
    .addOption(new Option('--role <role>', 'with --redis: api (queue jobs), worker (run them), both').choices(['api', 'worker', 'both']))
    .option('--queue-name <name>', 'with --redis: the BullMQ queue name')
    .option('--log', 'log every request (fastify logger, JSON lines on stdout)')
    .action(async (opts: ServeOptions) => {
      const { runServe } = await import('./server/serve.js');
      await runServe(opts);
    });

  program.command('info')
    .description('show a model\'s family, components, dtypes and parameter counts')
    .argument('<model>', 'diffusers folder, single .safetensors checkpoint, or Hub id org/name[@revision]')
    .option('--device <device>', "'cpu' | 'cuda' | 'cuda:N'", 'cpu')
    .addOption(new Option('--dtype <dtype>', 'compute dtype').choices(['float32', 'float16', 'bfloat16']).default(DEFAULTS.dtype))
    .option('--config-dir <dir>', 'single files: a diffusers folder with configs and tokenizers')
    .option('--variant <name>', 'weight file variant, e.g. fp16')
    .option('--revision <rev>', 'Hub ids: branch, tag or commit (default main)')
    .option('--json', 'print JSON')
    .action(async (model: string, opts: { device?: string; dtype?: string; configDir?: string; json?: boolean; revision?: string; variant?: string }) => {
      await runInfo(model, opts);
    });

  program.command('create-model')
    .description('write a random-weight diffusers model folder (tests, benchmarks)')
    .addOption(new Option('--preset <name>', 'architecture').choices(['sd15', 'sd21', 'sdxl']).default('sd15'))
    .addOption(new Option('--scale <scale>', 'tiny (test-sized) or full (real size)').choices(['tiny', 'full']).default('tiny'))
    .option('--seed <n>', 'weight seed', numberArg('--seed'), 0)
    .addOption(new Option('--dtype <dtype>', 'stored dtype').choices(['float32', 'float16']))
    .option('--device <device>', "where the random weights are drawn: 'cpu' (default; the same values on every machine) or 'cuda[:N]' (much faster for --scale full)")
    .requiredOption('-o, --out <dir>', 'output folder')
    .action(async (opts: CreateModelCliOptions) => {
      await runCreateModel(opts);
    });

  program.command('convert')
    .description('write a diffusers folder as one original-layout single-file checkpoint (SD 1.x, 2.x, XL)')
    .argument('<dir>', 'diffusers model folder')
    .argument('<out>', 'output .safetensors file')
    .addOption(new Option('--to <format>', 'output format').choices(['single-file']).default('single-file'))
    .option('--variant <name>', 'weight file variant to read, e.g. fp16')
    .action(async (dir: string, out: string, opts: { variant?: string }) => {
      const r = await saveSingleFile(dir, out, { variant: opts.variant });
      log(`wrote ${r.path}: ${r.tensors} tensors, ${r.family}${r.refiner ? ' refiner' : ''} layout`);
    });

  program.command('pull')
    .description('download a Hugging Face Hub pipeline (only the files sd-native loads) into the huggingface_hub cache')
    .argument('<id>', 'Hub model id org/name or org/name@revision')
    .option('--variant <name>', 'weight file variant, e.g. fp16')
    .option('--revision <rev>', 'branch, tag or commit (default main)')
    .option('--no-progress', 'no progress bar')
    .action(async (id: string, opts: { variant?: string; revision?: string; progress: boolean }) => { await runPull(id, opts); });

  program.command('ls')
    .description('list the models in the huggingface_hub cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => { await runLs(opts); });

  return program;
}

/**
 * Runs the CLI.
 * @param argv - as process.argv (node, script, args…)
 * @returns the exit status: 0 on success, 1 on any error (130 when interrupted)
 */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0; // --help, --version
      if (e.code === 'commander.help' || e.code === 'commander.helpDisplayed') return e.exitCode;
      const sub = argv.slice(2).find((a) => !a.startsWith('-'));
      const hint = sub && program.commands.some((c) => c.name() === sub) ? ` (see sd-native ${sub} --help)` : ' (see sd-native --help)';
      log(`error [E_INVALID_ARGUMENT]: ${e.message.replace(/^error: /, '')}${hint}`);
      return 1;
    }
    if (e instanceof SdError) {
      log(`error [${e.code}]: ${e.message}`);
      return e.code === 'E_ABORTED' ? 130 : 1;
    }
    log(`error [E_INTERNAL]: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

function isMain(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  main().then((code) => { process.exitCode = code; });
}
