/**
 * Images in and out: {@link GeneratedImage} (RGB pixels + the parameters that made them, encoded
 * with sharp; PNGs carry AUTOMATIC1111's `parameters` text chunk) and {@link loadInputImage}
 * (decode + resize like diffusers' `VaeImageProcessor.preprocess`, image_processor.py v0.30.3).
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { InvalidArgumentError, IoError, SdError } from './errors.js';
import type { ImageInput, RawImageInput } from './options.js';
import { describeValue } from './options.js';

// =============================================================================================
// Generation parameters and the A1111 "infotext"
// =============================================================================================

/** The settings that produced an image (stored in PNG metadata, A1111 style). */
export interface GenerationParameters {
  prompt: string;
  /** `""` when none was given. */
  negativePrompt: string;
  numInferenceSteps: number;
  guidanceScale: number;
  /** Generator seed of the call (one CPU generator for the whole batch, as in diffusers). */
  seed: number;
  width: number;
  height: number;
  /** diffusers scheduler class name, e.g. 'EulerAncestralDiscreteScheduler'. */
  scheduler: string;
  /** The scheduler config the call ran with (snake_case keys; used to name karras variants). */
  schedulerConfig?: Record<string, unknown>;
  /** Model name: the model folder's or file's base name. */
  model: string;
  clipSkip?: number;
  /** img2img strength. */
  strength?: number;
  eta?: number;
  /** Number of images of the call and this image's 0-based position in it (for batches > 1). */
  batchSize?: number;
  batchIndex?: number;
  /** ControlNet pipelines: one entry per ControlNet unit, in order. */
  controlnets?: ControlNetUnitParameters[];
}

/** One ControlNet unit of a generation (written as A1111's sd-webui-controlnet writes `ControlNet N`). */
export interface ControlNetUnitParameters {
  /** Where the ControlNet was loaded from; the text gives its base name without extension. */
  model: string;
  weight: number;
  guidanceStart: number;
  guidanceEnd: number;
  guessMode: boolean;
  /** Preprocessor ("Module"); 'none' when the control image was given ready-made. */
  module?: string;
}

/** Python's repr of a float, as the extension's infotext prints them (1 → "1.0"). */
const pyFloat = (v: number): string => (Number.isInteger(v) ? v.toFixed(1) : String(v));

/**
 * sd-webui-controlnet's infotext for unit `index`: `ControlNet 0: "Module: none, Model: name,
 * Weight: 1.0, Resize Mode: Just Resize, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect:
 * False, Control Mode: Balanced"` (guess mode ↔ its "ControlNet is more important" control mode).
 */
export function formatControlNetUnit(u: ControlNetUnitParameters): string {
  const model = u.model.replace(/[\\/]+$/, '').split(/[\\/]/).pop()!.replace(/\.(safetensors|pth|ckpt|bin)$/i, '');
  const fields: [string, string][] = [
    ['Module', u.module ?? 'none'],
    ['Model', model],
    ['Weight', pyFloat(u.weight)],
    ['Resize Mode', 'Just Resize'],
    ['Guidance Start', pyFloat(u.guidanceStart)],
    ['Guidance End', pyFloat(u.guidanceEnd)],
    ['Pixel Perfect', 'False'],
    ['Control Mode', u.guessMode ? 'ControlNet is more important' : 'Balanced'],
  ];
  return fields.map(([k, v]) => `${k}: ${v}`).join(', ');
}

/**
 * A1111 sampler name of a diffusers scheduler + config (the mapping of diffusers' docs,
 * "Schedulers — A1111 equivalents"): EulerAncestralDiscreteScheduler → "Euler a",
 * DPMSolverMultistepScheduler + use_karras_sigmas → "DPM++ 2M Karras", PNDMScheduler → "PLMS", ...
 * Unknown classes are returned unchanged.
 * @example samplerName('DPMSolverMultistepScheduler', { use_karras_sigmas: true }) // 'DPM++ 2M Karras'
 */
export function samplerName(scheduler: string, config: Record<string, unknown> = {}): string {
  const karras = config.use_karras_sigmas === true ? ' Karras' : '';
  switch (scheduler) {
    case 'DDIMScheduler': return 'DDIM';
    case 'PNDMScheduler': return 'PLMS';
    case 'LMSDiscreteScheduler': return 'LMS' + karras;
    case 'EulerDiscreteScheduler': return 'Euler' + karras;
    case 'EulerAncestralDiscreteScheduler': return 'Euler a';
    case 'HeunDiscreteScheduler': return 'Heun' + karras;
    case 'UniPCMultistepScheduler': return 'UniPC';
    case 'LCMScheduler': return 'LCM';
    case 'KDPM2DiscreteScheduler': return 'DPM2' + karras;
    case 'KDPM2AncestralDiscreteScheduler': return 'DPM2 a' + karras;
    case 'DPMSolverSinglestepScheduler': return 'DPM++ SDE' + karras;
    case 'DPMSolverMultistepScheduler': {
      const algo = config.algorithm_type ?? 'dpmsolver++';
      if (algo === 'sde-dpmsolver++') return 'DPM++ 2M SDE' + karras;
      if (algo === 'dpmsolver++') return 'DPM++ 2M' + karras;
      return 'DPM2M' + karras; // first-generation DPM-Solver: no A1111 equivalent
    }
    default: return scheduler;
  }
}

/** A1111's `quote()`: values holding ',', ':' or a newline are written as JSON strings. */
function quote(v: string): string {
  return /[,:\n]/.test(v) ? JSON.stringify(v) : v;
}

/**
 * Formats parameters as AUTOMATIC1111's infotext (the `parameters` PNG text chunk):
 * ```
 * <prompt>
 * Negative prompt: <negative prompt>          (omitted when empty, as A1111 does)
 * Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: v1-5[, Clip skip: 2][, Denoising strength: 0.8][, Eta: 0.3][, Batch size: 2, Batch pos: 1]
 * ```
 */
export function formatA1111Parameters(p: GenerationParameters): string {
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`);
  const kv: [string, string | number][] = [
    ['Steps', p.numInferenceSteps],
    ['Sampler', samplerName(p.scheduler, p.schedulerConfig)],
    ['CFG scale', p.guidanceScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model', p.model],
  ];
  if (p.clipSkip !== undefined) kv.push(['Clip skip', p.clipSkip]);
  if (p.strength !== undefined) kv.push(['Denoising strength', p.strength]);
  if (p.eta !== undefined && p.eta !== 0) kv.push(['Eta', p.eta]);
  if (p.batchSize !== undefined && p.batchSize > 1) {
    kv.push(['Batch size', p.batchSize], ['Batch pos', p.batchIndex ?? 0]);
  }
  (p.controlnets ?? []).forEach((u, k) => kv.push([`ControlNet ${k}`, formatControlNetUnit(u)]));
  lines.push(kv.map(([k, v]) => `${k}: ${typeof v === 'number' ? String(v) : quote(v)}`).join(', '));
  return lines.join('\n');
}

// =============================================================================================
// PNG text chunks (tEXt / iTXt), written after IHDR since sharp cannot write them
// =============================================================================================

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let crcTable: Uint32Array | undefined;
/** CRC-32 (ISO 3309 / PNG), table-driven. */
export function crc32(buf: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < buf.length; i++) c = crcTable[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/**
 * A PNG text chunk as PIL's `PngInfo.add_text` writes it: `tEXt` (Latin-1) when the text is
 * Latin-1, else an uncompressed `iTXt` (UTF-8).
 */
function textChunk(keyword: string, text: string): Buffer {
  if (!/^[\x20-\x7e]{1,79}$/.test(keyword)) throw new InvalidArgumentError(`PNG text keyword must be 1-79 printable ASCII characters; received ${describeValue(keyword)}`);
  if (/^[\x00-\xff]*$/.test(text)) {
    return pngChunk('tEXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
  }
  // keyword \0 compression-flag(0) compression-method(0) language-tag \0 translated-keyword \0 text
  return pngChunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

interface PngChunkRef { type: string; start: number; dataStart: number; length: number; end: number }

function* pngChunks(png: Buffer): Generator<PngChunkRef> {
  if (png.length < 8 || !png.subarray(0, 8).equals(PNG_SIGNATURE)) {
    throw new InvalidArgumentError('not a PNG file (bad signature)');
  }
  let pos = 8;
  while (pos + 12 <= png.length) {
    const length = png.readUInt32BE(pos);
    const type = png.toString('latin1', pos + 4, pos + 8);
    const end = pos + 12 + length;
    if (end > png.length) throw new InvalidArgumentError(`PNG chunk ${type} at byte ${pos} runs past the end of the file`);
    yield { type, start: pos, dataStart: pos + 8, length, end };
    if (type === 'IEND') return;
    pos = end;
  }
}

/**
 * Inserts text chunks right after IHDR of a PNG.
 * @param png - a PNG file
 * @param texts - keyword → text (e.g. `{ parameters: infotext }`)
 * @returns a new PNG buffer
 */
export function insertPngText(png: Buffer, texts: Record<string, string>): Buffer {
  const first = pngChunks(png).next();
  if (first.done || first.value.type !== 'IHDR') throw new InvalidArgumentError('not a PNG file (IHDR is not the first chunk)');
  const at = first.value.end;
  const chunks = Object.entries(texts).map(([k, v]) => textChunk(k, v));
  return Buffer.concat([png.subarray(0, at), ...chunks, png.subarray(at)]);
}

/**
 * Reads the `tEXt`, and uncompressed or zlib-compressed `iTXt`/`zTXt`, chunks of a PNG.
 * @returns keyword → text (e.g. `parameters` → the A1111 infotext)
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when the buffer is not a well-formed PNG.
 * @example readPngText(await readFile('out.png')).parameters
 */
export function readPngText(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of pngChunks(png)) {
    const data = png.subarray(c.dataStart, c.dataStart + c.length);
    const crc = png.readUInt32BE(c.dataStart + c.length);
    if (crc32(png.subarray(c.start + 4, c.dataStart + c.length)) !== crc) {
      throw new InvalidArgumentError(`PNG chunk ${c.type} at byte ${c.start} has a bad CRC`);
    }
    const nul = data.indexOf(0);
    if (nul < 0) continue;
    const keyword = data.toString('latin1', 0, nul);
    if (c.type === 'tEXt') {
      out[keyword] = data.toString('latin1', nul + 1);
    } else if (c.type === 'zTXt') {
      out[keyword] = inflate(data.subarray(nul + 2)).toString('latin1');
    } else if (c.type === 'iTXt') {
      const compressed = data[nul + 1] === 1;
      const langEnd = data.indexOf(0, nul + 3);
      const transEnd = data.indexOf(0, langEnd + 1);
      if (langEnd < 0 || transEnd < 0) continue;
      const body = data.subarray(transEnd + 1);
      out[keyword] = (compressed ? inflate(body) : body).toString('utf8');
    }
  }
  return out;
}

function inflate(b: Buffer): Buffer {
  try {
    return inflateSync(b);
  } catch (e) {
    throw new InvalidArgumentError(`PNG text chunk is not valid zlib data: ${(e as Error).message}`);
  }
}

// =============================================================================================
// GeneratedImage
// =============================================================================================

/** Encoder options of {@link GeneratedImage.toPNG}. */
export interface PngOptions {
  /** Store the generation parameters as the `parameters` text chunk (A1111 infotext; default true). */
  metadata?: boolean;
  /** zlib level 0–9 (default 6). */
  compressionLevel?: number;
}

/** Encoder options of {@link GeneratedImage.toJPEG} / {@link GeneratedImage.toWebP}. */
export interface LossyOptions {
  /** 1–100 (default 90). */
  quality?: number;
  /** Store the A1111 infotext as the EXIF ImageDescription (default true). */
  metadata?: boolean;
}

/**
 * One generated image: RGB uint8 pixels and the parameters that made it.
 * @example
 * const { images } = await pipe.generate({ prompt: 'a lighthouse at dusk', seed: 7 });
 * await writeFile('lighthouse.png', await images[0].toPNG());
 */
export class GeneratedImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** Pixels, row-major `[height, width, 3]` RGB uint8 (`height × width × 3` bytes). */
  readonly data: Buffer;
  /** The settings that produced the image. */
  readonly parameters: GenerationParameters;

  /**
   * @param data - `[height, width, 3]` RGB uint8 pixels
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `data` does not hold `width × height × 3` bytes.
   */
  constructor(width: number, height: number, data: Uint8Array, parameters: GenerationParameters) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      throw new InvalidArgumentError(`image size must be positive integers; received ${describeValue(width)}×${describeValue(height)}`);
    }
    if (data.length !== width * height * 3) {
      throw new InvalidArgumentError(`image data must hold width×height×3 = ${width * height * 3} bytes; received ${data.length}`);
    }
    this.width = width;
    this.height = height;
    this.data = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.parameters = parameters;
  }

  /** The A1111 infotext of {@link parameters} (what the PNG `parameters` chunk holds). */
  get infotext(): string {
    return formatA1111Parameters(this.parameters);
  }

  private sharp() {
    return sharp(this.data, { raw: { width: this.width, height: this.height, channels: 3 } });
  }

  /**
   * Encodes as PNG (sharp), with the A1111 `parameters` text chunk after IHDR.
   * @returns the PNG file
   * @example await writeFile('out.png', await image.toPNG());
   */
  async toPNG(options: PngOptions = {}): Promise<Buffer> {
    const png = await this.sharp().png({ compressionLevel: options.compressionLevel ?? 6 }).toBuffer();
    return options.metadata === false ? png : insertPngText(png, { parameters: this.infotext });
  }

  /**
   * Encodes as JPEG (sharp, mozjpeg off, 4:2:0). The infotext goes to EXIF ImageDescription.
   * @param options - quality 1–100 (default 90)
   */
  async toJPEG(options: LossyOptions = {}): Promise<Buffer> {
    let s = this.sharp().jpeg({ quality: options.quality ?? 90 });
    if (options.metadata !== false) s = s.withExif({ IFD0: { ImageDescription: asciiExif(this.infotext) } });
    return s.toBuffer();
  }

  /**
   * Encodes as WebP (sharp). The infotext goes to EXIF ImageDescription.
   * @param options - quality 1–100 (default 90)
   */
  async toWebP(options: LossyOptions = {}): Promise<Buffer> {
    let s = this.sharp().webp({ quality: options.quality ?? 90 });
    if (options.metadata !== false) s = s.withExif({ IFD0: { ImageDescription: asciiExif(this.infotext) } });
    return s.toBuffer();
  }

  /**
   * Writes the image; the format follows the extension (.png, .jpg/.jpeg, .webp). A missing
   * folder is created; the file is written to a temporary file in the same folder and renamed
   * over `file`, so a failed write (a full disk…) leaves no partial file behind.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for another extension.
   * @throws IoError (`E_IO`) when the folder cannot be created or written (read-only, a parent that
   *   is a file, no space left…); the message names the path and the reason.
   */
  async save(file: string): Promise<void> {
    const ext = path.extname(file).toLowerCase();
    if (!IMAGE_EXTENSIONS.includes(ext)) {
      throw new InvalidArgumentError(`image file extension must be .png, .jpg, .jpeg or .webp; received ${describeValue(file)}`);
    }
    await checkOutputDir(path.dirname(path.resolve(file)), file);
    const buf = ext === '.png' ? await this.toPNG() : ext === '.webp' ? await this.toWebP() : await this.toJPEG();
    await writeFileAtomic(file, buf);
  }
}

/** The extensions {@link GeneratedImage.save} writes. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp'];

/** The words for the system error codes an output write meets. */
function ioReason(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  const what: Record<string, string> = {
    EACCES: 'permission denied (the folder is read-only for this user)',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    ENOTDIR: 'a parent of the path is a file, not a folder',
    EISDIR: 'the path is a folder',
    ENOENT: 'no such file or folder',
    ENAMETOOLONG: 'the name is too long',
    EEXIST: 'a file of that name is in the way',
    EIO: 'input/output error',
  };
  const text = typeof code === 'string' && what[code] ? what[code] : e instanceof Error ? e.message : String(e);
  return typeof code === 'string' ? `${text} (${code})` : text;
}

/**
 * Makes sure `dir` exists (created with its parents when missing) and is a folder this process can
 * write to — before a generation, so that an unwritable output fails at once, not after it.
 * @param dir - the output folder
 * @param target - the output path to name in the error (default `dir`)
 * @throws IoError (`E_IO`) naming the path and the reason: a read-only folder or file system
 *   (EACCES, EROFS), a parent that is a file (ENOTDIR), a path that is a file, not a folder…
 */
export async function checkOutputDir(dir: string, target: string = dir): Promise<void> {
  const fail = (reason: string, e?: unknown): never => {
    throw new IoError(`cannot write ${JSON.stringify(target)}: ${reason}`, e === undefined ? undefined : { cause: e });
  };
  const st = await stat(dir).catch((e: unknown) => ((e as { code?: string }).code === 'ENOENT' ? undefined : fail(`${dir}: ${ioReason(e)}`, e)));
  if (st === undefined) {
    try {
      await mkdir(dir, { recursive: true });
    } catch (e) {
      fail(`the folder ${dir} cannot be created: ${ioReason(e)}`, e);
    }
  } else if (!st.isDirectory()) {
    fail(`${dir} is a file, not a folder`);
  }
  try {
    await access(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (e) {
    fail(`the folder ${dir} is not writable: ${ioReason(e)}`, e);
  }
}

/**
 * @internal Writes `data` to `file` atomically: a temporary file in the same folder
 * (`.<name>.<random>.tmp`), then a rename over `file`. On any failure the temporary file is removed
 * and nothing is left at `file` (an existing file there is kept).
 * @param write - writes the temporary file (tests inject a failing one)
 * @throws IoError (`E_IO`) naming `file` and the reason (ENOSPC, EACCES…).
 */
export async function writeFileAtomic(
  file: string, data: Uint8Array,
  write: (tmp: string, data: Uint8Array) => Promise<void> = (tmp, d) => writeFile(tmp, d, { flag: 'wx', mode: 0o666 }),
): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await write(tmp, data);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    if (e instanceof SdError) throw e;
    throw new IoError(`cannot write ${JSON.stringify(file)}: ${ioReason(e)}`, { cause: e });
  }
}

/** EXIF ASCII strings cannot hold non-ASCII text; escape it as \uXXXX. */
function asciiExif(s: string): string {
  return s.replace(/[^\x20-\x7e\n]/g, (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'));
}

// =============================================================================================
// Input images
// =============================================================================================

/** A decoded input image: `[height, width, 3]` RGB uint8. */
export interface DecodedImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 3;
}

/**
 * Decodes an input image and brings it to the size the pipeline runs at, like diffusers'
 * `load_image` + `VaeImageProcessor.preprocess`: EXIF orientation applied, converted to RGB
 * (alpha dropped, not composited — PIL's `convert('RGB')`), then resized with lanczos to
 * `width × height`; a missing dimension is taken from the image and rounded down to a multiple of 8.
 * @param input - a file path, an encoded PNG/JPEG/WebP/... Buffer, or raw `{ data, width, height, channels: 3 | 4 }`
 * @param width - target width in pixels (default: the image's, rounded down to a multiple of 8)
 * @param height - target height in pixels (default: the image's, rounded down to a multiple of 8)
 * @returns `[height, width, 3]` RGB uint8 pixels
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`): "image is not a decodable image: …", a missing file,
 *   raw data of the wrong length, or an image smaller than 8×8.
 * @example const img = await loadInputImage('photo.jpg', 512, 512);
 */
export async function loadInputImage(input: ImageInput, width?: number, height?: number): Promise<DecodedImage> {
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v <= 0 || v > 8192)) {
      throw new InvalidArgumentError(`${name} must be a positive integer not above 8192; received ${describeValue(v)}`);
    }
  }
  let img: sharp.Sharp;
  if (typeof input === 'string') {
    let bytes: Buffer;
    try {
      bytes = await readFile(input);
    } catch (e) {
      throw new InvalidArgumentError(`image file ${JSON.stringify(input)} cannot be read: ${(e as Error).message}`, { cause: e });
    }
    img = sharp(bytes, { failOn: 'error' }).rotate();
  } else if (Buffer.isBuffer(input)) {
    img = sharp(input, { failOn: 'error' }).rotate();
  } else if (input && typeof input === 'object' && input.data instanceof Uint8Array) {
    const r = input as RawImageInput;
    if (!Number.isInteger(r.width) || !Number.isInteger(r.height) || r.width <= 0 || r.height <= 0 || (r.channels !== 3 && r.channels !== 4)) {
      throw new InvalidArgumentError(`image must be { data: Uint8Array, width, height, channels: 3 } with positive integer sizes; received ${r.width}×${r.height}×${r.channels}`);
    }
    if (r.data.length !== r.width * r.height * r.channels) {
      throw new InvalidArgumentError(`image.data must hold width×height×channels = ${r.width * r.height * r.channels} bytes; received ${r.data.length}`);
    }
    img = sharp(r.data, { raw: { width: r.width, height: r.height, channels: r.channels } });
  } else {
    throw new InvalidArgumentError(`image must be a file path, a Buffer or { data, width, height, channels: 3 }; received ${describeValue(input)}`);
  }

  try {
    // Decode once to learn the oriented size.
    const decoded = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    let { data } = decoded;
    const { width: w0, height: h0, channels } = decoded.info;
    if (channels !== 3) throw new Error(`decoded to ${channels} channels`);
    const tw = width ?? w0 - (w0 % 8);
    const th = height ?? h0 - (h0 % 8);
    if (tw < 8 || th < 8) {
      throw new InvalidArgumentError(`image must be at least 8×8 pixels; received ${w0}×${h0}`);
    }
    if (tw !== w0 || th !== h0) {
      data = await sharp(data, { raw: { width: w0, height: h0, channels: 3 } })
        .resize(tw, th, { fit: 'fill', kernel: 'lanczos3' })
        .raw()
        .toBuffer();
    }
    return { data, width: tw, height: th, channels: 3 };
  } catch (e) {
    if (e instanceof SdError) throw e;
    throw new InvalidArgumentError(`image is not a decodable image: ${(e as Error).message}`, { cause: e });
  }
}
