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
import { hubOptionsOf, parseHubFile, resolveConfigDir, resolvePipelineLocation } from '../loaders/hub.js';
import { StableDiffusionPipeline } from './stable_diffusion.js';
import { StableDiffusionImg2ImgPipeline } from './stable_diffusion_img2img.js';
import { StableDiffusionInpaintPipeline } from './stable_diffusion_inpaint.js';
import { StableDiffusionXLPipeline } from './stable_diffusion_xl.js';
import { StableDiffusionXLImg2ImgPipeline } from './stable_diffusion_xl_img2img.js';

/**
 * What a location names: a Hub id that is no local path is downloaded first (the snapshot folder
 * is returned); `single` for a file, local or a Hub file reference (fromSingleFile); `xl` from the
 * `model_index.json` of the folder, or of a single file's `configDir` (a Hub id: its configs). A
 * missing or malformed index means SD 1.x/2.x here: the pipeline loader then reports the problem,
 * as it does invalid options, with its own messages.
 */
async function target(location: string, options: LoadOptions | undefined): Promise<{ location: string; single: boolean; xl: boolean }> {
  let o;
  try { o = parseLoadOptions(options); } catch { return { location, single: false, xl: false }; }
  const hub = hubOptionsOf(o);
  // configDir is refused for folders by the loader; with one, the location is a single file
  if (typeof location === 'string' && location.length > 0 && o.configDir === undefined) {
    location = await resolvePipelineLocation(location, hub);
  }
  const st = await stat(location).catch(() => undefined);
  const single = st ? st.isFile() : parseHubFile(location) !== undefined;
  let dir = single ? o.configDir : st ? location : undefined;
  let xl = false;
  if (dir !== undefined) {
    try {
      if (single) dir = await resolveConfigDir(dir, hub); // the loader finds them cached
      xl = (await readModelIndex(dir)).className.startsWith('StableDiffusionXL');
    } catch { /* reported by the loader */ }
  }
  return { location, single, xl };
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
    const t = await target(location, options);
    const Cls = t.xl ? StableDiffusionXLPipeline : StableDiffusionPipeline;
    return t.single ? Cls.fromSingleFile(t.location, options) : Cls.fromPretrained(t.location, options);
  },
};

/** Image → image: {@link StableDiffusionImg2ImgPipeline} or {@link StableDiffusionXLImg2ImgPipeline}. */
export const AutoPipelineForImage2Image = {
  /** As {@link AutoPipelineForText2Image.fromPretrained}. */
  async fromPretrained(location: string, options?: LoadOptions): Promise<StableDiffusionImg2ImgPipeline | StableDiffusionXLImg2ImgPipeline> {
    const t = await target(location, options);
    const Cls = t.xl ? StableDiffusionXLImg2ImgPipeline : StableDiffusionImg2ImgPipeline;
    return t.single ? Cls.fromSingleFile(t.location, options) : Cls.fromPretrained(t.location, options);
  },
};

/** Inpainting: {@link StableDiffusionInpaintPipeline} (SD 1.x/2.x; SDXL inpainting is not implemented). */
export const AutoPipelineForInpainting = {
  /**
   * As {@link AutoPipelineForText2Image.fromPretrained}.
   * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for an SDXL model.
   */
  async fromPretrained(location: string, options?: LoadOptions): Promise<StableDiffusionInpaintPipeline> {
    const t = await target(location, options);
    if (t.xl) throw new UnsupportedModelError(`${location}: inpainting runs SD 1.x/2.x models; SDXL inpainting is not implemented`);
    const Cls = StableDiffusionInpaintPipeline;
    return t.single ? Cls.fromSingleFile(t.location, options) : Cls.fromPretrained(t.location, options);
  },
};
