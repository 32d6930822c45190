/**
 * `create-model`: writes a diffusers folder with random weights for a model family preset.
 * Real weights cannot be downloaded on every machine (CI, air-gapped servers); a random model
 * of the real shape is what demos, tests and benchmarks run when none is given.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { addon } from './native.js';
import { native, InvalidArgumentError } from './errors.js';

/** Model family preset. */
export type ModelPreset = 'sd15' | 'sd21' | 'sdxl';
/** `full` = the real architecture (SD 1.5: 860M-parameter UNet, SD 2.1: 865M, SDXL: 2.6B); `tiny` = a few-MB model of the same family. */
export type ModelScale = 'tiny' | 'full';

export interface CreateModelOptions {
  preset: ModelPreset;
  scale: ModelScale;
  /** Output folder (created; existing component files are overwritten). */
  out: string;
  /** Seed of the random weights. Default 0. */
  seed?: number;
  /** Weight dtype stored in the files. Default 'float32' (tiny) / 'float16' (full). */
  dtype?: 'float32' | 'float16';
  /**
   * Where the random weights are drawn: 'cpu' (default; the files are the same on every machine
   * for a seed) or 'cuda' / 'cuda:N' (much faster for `full`; the values come from that device's
   * generator, so they differ from the CPU's but are reproducible on the same kind of GPU).
   * @throws DeviceUnavailableError (`E_DEVICE_UNAVAILABLE`) for CUDA in a build or machine without it.
   */
  device?: string;
}

export interface CreatedModel {
  path: string;
  /** Parameters per component. */
  parameters: Record<string, number>;
  /** Bytes written per component. */
  bytes: Record<string, number>;
}

const SD15_SCHEDULER = {
  _class_name: 'PNDMScheduler',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};

/** The UNet2DConditionModel config fields SD 1.x, SD 2.x and SDXL share (diffusers defaults as shipped). */
const UNET_COMMON = {
  _class_name: 'UNet2DConditionModel',
  act_fn: 'silu',
  center_input_sample: false,
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
} as const;

function sd15Configs(scale: ModelScale) {
  const full = scale === 'full';
  const unet = {
    ...UNET_COMMON,
    attention_head_dim: 8,
    block_out_channels: full ? [320, 640, 1280, 1280] : [32, 64],
    cross_attention_dim: full ? 768 : 32,
    down_block_types: full
      ? ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']
      : ['CrossAttnDownBlock2D', 'DownBlock2D'],
    sample_size: full ? 64 : 32,
    up_block_types: full
      ? ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']
      : ['UpBlock2D', 'CrossAttnUpBlock2D'],
  };
  const vaeBlocks = full ? [128, 256, 512, 512] : [32, 64];
  const vae = {
    _class_name: 'AutoencoderKL',
    act_fn: 'silu',
    block_out_channels: vaeBlocks,
    down_block_types: vaeBlocks.map(() => 'DownEncoderBlock2D'),
    up_block_types: vaeBlocks.map(() => 'UpDecoderBlock2D'),
    in_channels: 3,
    out_channels: 3,
    latent_channels: 4,
    layers_per_block: 2,
    norm_num_groups: 32,
    sample_size: full ? 512 : 64,
    scaling_factor: 0.18215,
  };
  const textEncoder = {
    architectures: ['CLIPTextModel'],
    bos_token_id: 0,
    eos_token_id: 2,
    pad_token_id: 1,
    hidden_act: 'quick_gelu',
    hidden_size: full ? 768 : 32,
    intermediate_size: full ? 3072 : 37,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: 'clip_text_model',
    num_attention_heads: full ? 12 : 4,
    num_hidden_layers: full ? 12 : 5,
    projection_dim: full ? 768 : 32,
    vocab_size: 49408,
  };
  return { unet, vae, textEncoder };
}

/** SD 2.1 (stabilityai/stable-diffusion-2-1): OpenCLIP-H text encoder (1024-d, 23 layers, gelu), v-prediction DDIM. */
const SD21_SCHEDULER = {
  _class_name: 'DDIMScheduler',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'v_prediction',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};

function sd21Configs(scale: ModelScale) {
  const full = scale === 'full';
  const base = sd15Configs(scale);
  const unet = {
    ...base.unet,
    attention_head_dim: full ? [5, 10, 20, 20] : [2, 4],
    cross_attention_dim: full ? 1024 : 32,
    sample_size: full ? 96 : 32,
    use_linear_projection: true,
    upcast_attention: full,
  };
  const vae = { ...base.vae, sample_size: full ? 768 : 64 };
  const textEncoder = {
    ...base.textEncoder,
    hidden_act: 'gelu',
    hidden_size: full ? 1024 : 32,
    intermediate_size: full ? 4096 : 37,
    num_attention_heads: full ? 16 : 4,
    num_hidden_layers: full ? 23 : 4,
    projection_dim: full ? 512 : 32,
  };
  return { unet, vae, textEncoder };
}

/** SDXL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0): EulerDiscreteScheduler, "leading". */
const SDXL_SCHEDULER = {
  _class_name: 'EulerDiscreteScheduler',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
  use_karras_sigmas: false,
};

function sdxlConfigs(scale: ModelScale) {
  const full = scale === 'full';
  const base = sd15Configs(scale);
  const te1 = { ...base.textEncoder, num_hidden_layers: full ? 12 : 5 };
  const te2 = {
    ...base.textEncoder,
    architectures: ['CLIPTextModelWithProjection'],
    hidden_act: 'gelu',
    hidden_size: full ? 1280 : 32,
    intermediate_size: full ? 5120 : 45,
    num_attention_heads: full ? 20 : 2,
    num_hidden_layers: full ? 32 : 4,
    projection_dim: full ? 1280 : 32,
  };
  const timeDim = full ? 256 : 8;
  const unet = {
    ...UNET_COMMON,
    addition_embed_type: 'text_time',
    addition_embed_type_num_heads: 64,
    addition_time_embed_dim: timeDim,
    attention_head_dim: full ? [5, 10, 20] : [2, 4],
    block_out_channels: full ? [320, 640, 1280] : [32, 64],
    cross_attention_dim: te1.hidden_size + te2.hidden_size, // 2048 = 768 + 1280
    down_block_types: full
      ? ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D']
      : ['DownBlock2D', 'CrossAttnDownBlock2D'],
    projection_class_embeddings_input_dim: 6 * timeDim + te2.projection_dim, // 2816 = 6·256 + 1280
    sample_size: full ? 128 : 32,
    transformer_layers_per_block: full ? [1, 2, 10] : [1, 2],
    up_block_types: full
      ? ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D']
      : ['CrossAttnUpBlock2D', 'UpBlock2D'],
    use_linear_projection: true,
  };
  const vae = { ...base.vae, sample_size: full ? 1024 : 64, scaling_factor: 0.13025, force_upcast: true };
  return { unet, vae, textEncoder: te1, textEncoder2: te2 };
}

/** GPT-2/CLIP byte → printable unicode table, in CLIP's vocabulary order. */
function byteUnicodeChars(): string[] {
  const bs: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  return cs.map((c) => String.fromCharCode(c));
}

/**
 * A byte-level BPE tokenizer with no merges (every character is a token), CLIP's special
 * tokens at CLIP's ids (49406, 49407) and CLIP's conventions (lower-case, `</w>` word ends).
 * It stands in for the real CLIP vocabulary, which random-weight models do not need.
 */
async function writeByteLevelTokenizer(dir: string, padToken = '<|endoftext|>'): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const chars = byteUnicodeChars();
  const vocab: Record<string, number> = {};
  chars.forEach((c, i) => { vocab[c] = i; });
  chars.forEach((c, i) => { vocab[c + '</w>'] = 256 + i; });
  vocab['<|startoftext|>'] = 49406;
  vocab['<|endoftext|>'] = 49407;
  const special = {
    bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: padToken,
  };
  await fs.writeFile(path.join(dir, 'vocab.json'), JSON.stringify(vocab));
  await fs.writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\n');
  await fs.writeFile(path.join(dir, 'special_tokens_map.json'), JSON.stringify(special, null, 2));
  await fs.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
    ...special, model_max_length: 77, do_lower_case: true, tokenizer_class: 'CLIPTokenizer',
  }, null, 2));
}

/**
 * The config.json contents `createModel` writes for a preset (unet, vae, text encoder(s), scheduler).
 * @throws InvalidArgumentError for an unknown preset.
 */
export function presetConfigs(preset: ModelPreset, scale: ModelScale): {
  unet: Record<string, unknown>; vae: Record<string, unknown>; textEncoder: Record<string, unknown>;
  textEncoder2?: Record<string, unknown>; scheduler: Record<string, unknown>;
} {
  if (preset === 'sd15') return { ...sd15Configs(scale), scheduler: SD15_SCHEDULER };
  if (preset === 'sd21') return { ...sd21Configs(scale), scheduler: SD21_SCHEDULER };
  if (preset === 'sdxl') return { ...sdxlConfigs(scale), scheduler: SDXL_SCHEDULER };
  throw new InvalidArgumentError(`preset must be "sd15", "sd21" or "sdxl"; received "${String(preset)}"`);
}

/**
 * Writes a diffusers folder (model_index.json, scheduler/, tokenizer/, text_encoder/, unet/,
 * vae/) with random weights in the architecture of `preset` at `scale`.
 * @throws InvalidArgumentError for an unknown preset, scale or device string;
 *   DeviceUnavailableError (`E_DEVICE_UNAVAILABLE`) for a CUDA device without CUDA.
 * @example await createModel({ preset: 'sd15', scale: 'full', out: './models/sd15-random' });
 */
export async function createModel(options: CreateModelOptions): Promise<CreatedModel> {
  const { preset, scale, out } = options;
  if (preset !== 'sd15' && preset !== 'sd21' && preset !== 'sdxl') {
    throw new InvalidArgumentError(`preset must be "sd15", "sd21" or "sdxl"; received "${String(preset)}"`);
  }
  if (scale !== 'tiny' && scale !== 'full') throw new InvalidArgumentError(`scale must be "tiny" or "full"; received "${String(scale)}"`);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidArgumentError(`seed must be a non-negative integer; received ${seed}`);
  const dtype = options.dtype ?? (scale === 'full' ? 'float16' : 'float32');
  const device = options.device ?? 'cpu';
  if (typeof device !== 'string' || !/^(cpu|cuda(:\d+)?)$/.test(device)) {
    throw new InvalidArgumentError(`device must be "cpu", "cuda" or "cuda:N"; received ${JSON.stringify(device)}`);
  }
  const xl = preset === 'sdxl';
  const cfg = preset === 'sd15' ? sd15Configs(scale) : preset === 'sd21' ? sd21Configs(scale) : sdxlConfigs(scale);
  const scheduler = preset === 'sd15' ? SD15_SCHEDULER : preset === 'sd21' ? SD21_SCHEDULER : SDXL_SCHEDULER;
  await fs.mkdir(out, { recursive: true });
  const index: Record<string, unknown> = xl
    ? {
      _class_name: 'StableDiffusionXLPipeline',
      _diffusers_version: '0.30.3',
      _sd_native: { preset, scale, seed, random_weights: true, ...(device === 'cpu' ? {} : { device }) },
      force_zeros_for_empty_prompt: true,
      scheduler: ['diffusers', scheduler._class_name],
      text_encoder: ['transformers', 'CLIPTextModel'],
      text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      tokenizer_2: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    }
    : {
      _class_name: 'StableDiffusionPipeline',
      _diffusers_version: '0.30.3',
      _sd_native: { preset, scale, seed, random_weights: true, ...(device === 'cpu' ? {} : { device }) },
      feature_extractor: [null, null],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', scheduler._class_name],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    };
  await fs.writeFile(path.join(out, 'model_index.json'), JSON.stringify(index, null, 2));
  await fs.mkdir(path.join(out, 'scheduler'), { recursive: true });
  await fs.writeFile(path.join(out, 'scheduler', 'scheduler_config.json'), JSON.stringify(scheduler, null, 2));
  // SD 2.x's OpenCLIP tokenizer and SDXL's tokenizer_2 pad with "!" (id 0); SD 1.x / SDXL tokenizer with <|endoftext|>
  await writeByteLevelTokenizer(path.join(out, 'tokenizer'), preset === 'sd21' ? '!' : '<|endoftext|>');
  if (xl) await writeByteLevelTokenizer(path.join(out, 'tokenizer_2'), '!');

  const components: Array<['text_encoder' | 'text_encoder_2' | 'vae' | 'unet', object, string]> = [
    ['text_encoder', cfg.textEncoder, 'model.safetensors'],
    ...('textEncoder2' in cfg ? [['text_encoder_2', cfg.textEncoder2, 'model.safetensors'] as ['text_encoder_2', object, string]] : []),
    ['vae', cfg.vae, 'diffusion_pytorch_model.safetensors'],
    ['unet', cfg.unet, 'diffusion_pytorch_model.safetensors'],
  ];
  const parameters: Record<string, number> = {};
  const bytes: Record<string, number> = {};
  for (const [i, [name, config, file]] of components.entries()) {
    const dir = path.join(out, name);
    await fs.mkdir(dir, { recursive: true });
    const configPath = path.join(dir, 'config.json');
    await fs.writeFile(configPath, JSON.stringify(config, null, 2));
    const r = await native(() => addon().createRandomWeights({
      component: name, configPath, seed: seed + i, out: path.join(dir, file), dtype, device,
    }));
    parameters[name] = r.parameters;
    bytes[name] = r.bytes;
  }
  return { path: out, parameters, bytes };
}
