/**
 * diffusers' `AutoPipelineForText2Image` / `AutoPipelineForImage2Image` / `AutoPipelineForInpainting`
 * (pipelines/auto_pipeline.py): the pipeline class for a task, picked from the model's
 * `model_index.json` (`_class_name`): SD 1.x/2.x or SDXL. For a single file, the index of
 * `options.configDir` decides (no `configDir`: SD 1.x/2.x). A Hugging Face Hub id (`org/name[@revision]`)
 * that is not a local path is downloaded first (lib/loaders/hub.ts) and its snapshot folder loaded.
 */
import { stat } from 'node:fs/promises';
import { UnsupportedModelError } from '../errors.js';
import { readModelIndex } from '../loaders/single_file.js';
import { parseLoadOptions, type LoadOptions } from '../options.js';
import { parseHubFile, resolveConfigDir, resolvePipelineLocation, type HubOptions } from '../loaders/hub.js';
import { StableDiffusionPipeline } from './stable_diffusion.js';
import { StableDiffusionImg2ImgPipeline } from './stable_diffusion_img2img.js';
import { StableDiffusionInpaintPipeline } from './stable_diffusion_inpaint.js';
import { StableDiffusionXLPipeline } from './stable_diffusion_xl.js';
import { StableDiffusionXLImg2ImgPipeline } from './stable_diffusion_xl_img2img.js';

/** True when the model (a folder, or a single file with `configDir`) is an SDXL pipeline. */
async function isXl(location: string, options: LoadOptions | undefined): Promise<boolean> {
  const st = await stat(location).catch(() => undefined);
  const file = st ? st.isFile() : parseHubFile(location) !== undefined; // a single file: its configDir decides
  let dir = file ? options?.configDir : location;
  if (dir === undefined || (st === undefined && !file)) return false; // the pipeline loader reports what is missing
  try {
    if (file) dir = await resolveConfigDir(dir, hubOptions(options)); // a Hub id: its configs (the loader finds them cached)
    return (await readModelIndex(dir)).className.startsWith('StableDiffusionXL');
  } catch {
    return false; // the pipeline loader reports a missing or malformed model_index.json
  }
}

/**
 * A Hub id that is not a local path → its downloaded snapshot folder; anything else unchanged
 * (invalid options are left for the pipeline loader to report, with its messages).
 */
async function resolve(location: string, options: LoadOptions | undefined): Promise<string> {
  if (typeof location !== 'string' || location.length === 0) return location;
  let o;
  try { o = parseLoadOptions(options); } catch { return location; }
  if (o.configDir !== undefined) return location; // refused for folders by the loader
  return resolvePipelineLocation(location, hubOptions(o));
}

/** The Hub fields of load options (invalid options are left for the pipeline loader to report). */
function hubOptions(options: LoadOptions | undefined): HubOptions {
  let o;
  try { o = parseLoadOptions(options); } catch { return {}; }
  return {
    revision: o.revision, variant: o.variant, token: o.token, localFilesOnly: o.localFilesOnly,
    cacheDir: o.cacheDir, onProgress: o.onProgress, signal: o.signal,
  };
}

/** True when `location` is a file (a single-file checkpoint: fromSingleFile), local or on the Hub (org/name/file.safetensors). */
async function isFile(location: string): Promise<boolean> {
  const st = await stat(location).catch(() => undefined);
  return st ? st.isFile() : parseHubFile(location) !== undefined;
}

/** Text → image: {@link StableDiffusionPipeline} or {@link StableDiffusionXLPipeline}. */
export const AutoPipelineForText2Image = {
  /**
   * @param location - a diffusers folder, a single `.safetensors` checkpoint, or a Hub id
   *   `org/name[@revision]` (a local path of that name wins)
   * @param options - as `StableDiffusionPipeline.fromPretrained` / `fromSingleFile` (Hub ids: revision,
   *   token, localFilesOnly, cacheDir, onProgress, signal)
   * @throws the errors of those loaders (Hub ids: also E_UNAUTHORIZED, E_ABORTED).
   */
  async fromPretrained(location: string, options?: LoadOptions): Promise<StableDiffusionPipeline | StableDiffusionXLPipeline> {
    location = await resolve(location, options);
    const single = await isFile(location);
    if (await isXl(location, options)) {
      return single ? StableDiffusionXLPipeline.fromSingleFile(location, options) : StableDiffusionXLPipeline.fromPretrained(location, options);
    }
    return single ? StableDiffusionPipeline.fromSingleFile(location, options) : StableDiffusionPipeline.fromPretrained(location, options);
  },
};

/** Image → image: {@link StableDiffusionImg2ImgPipeline} or {@link StableDiffusionXLImg2ImgPipeline}. */
export const AutoPipelineForImage2Image = {
  /** As {@link AutoPipelineForText2Image.fromPretrained}. */
  async fromPretrained(location: string, options?: LoadOptions): Promise<StableDiffusionImg2ImgPipeline | StableDiffusionXLImg2ImgPipeline> {
    location = await resolve(location, options);
    const single = await isFile(location);
    if (await isXl(location, options)) {
      return single ? StableDiffusionXLImg2ImgPipeline.fromSingleFile(location, options) : StableDiffusionXLImg2ImgPipeline.fromPretrained(location, options);
    }
    return single ? StableDiffusionImg2ImgPipeline.fromSingleFile(location, options) : StableDiffusionImg2ImgPipeline.fromPretrained(location, options);
  },
};

/** Inpainting: {@link StableDiffusionInpaintPipeline} (SD 1.x/2.x; SDXL inpainting is not implemented). */
export const AutoPipelineForInpainting = {
  /**
   * As {@link AutoPipelineForText2Image.fromPretrained}.
   * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for an SDXL model.
   */
  async fromPretrained(location: string, options?: LoadOptions): Promise<StableDiffusionInpaintPipeline> {
    location = await resolve(location, options);
    if (await isXl(location, options)) {
      throw new UnsupportedModelError(`${location}: inpainting runs SD 1.x/2.x models; SDXL inpainting is not implemented`);
    }
    return await isFile(location)
      ? StableDiffusionInpaintPipeline.fromSingleFile(location, options) : StableDiffusionInpaintPipeline.fromPretrained(location, options);
  },
};
