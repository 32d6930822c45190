/**
 * The canny preprocessor of ControlNet's canny models: controlnet_aux's `CannyDetector` —
 * `cv2.Canny(image, low_threshold, high_threshold)` on the RGB image, then the single-channel edge
 * map replicated to three channels (`HWC3`). The detector is native (native/core/pipelines/canny.cc,
 * OpenCV 4.x's algorithm with its defaults: Sobel 3×3 with replicated borders, L1 gradient
 * magnitude, the strongest channel per pixel, non-maximum suppression along 4 directions,
 * hysteresis over 8-connected pixels; no Gaussian blur, as cv2.Canny has none) and runs on a
 * worker thread.
 */
import { addon } from './native.js';
import { InvalidArgumentError, describeValue, native } from './errors.js';
import sharp from 'sharp';
import type { DecodedImage } from './image.js';
import type { ImageInput, RawImageInput } from './options.js';

/** The image as RGB uint8 at its own size (EXIF orientation applied, alpha dropped). */
async function rgbPixels(input: ImageInput): Promise<DecodedImage> {
  let img: sharp.Sharp;
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    img = sharp(input, { failOn: 'error' }).rotate();
  } else if (input && typeof input === 'object' && (input as RawImageInput).data instanceof Uint8Array) {
    const r = input as RawImageInput;
    if (!Number.isInteger(r.width) || !Number.isInteger(r.height) || r.width <= 0 || r.height <= 0
      || (r.channels !== 3 && r.channels !== 4) || r.data.length !== r.width * r.height * r.channels) {
      throw new InvalidArgumentError(`canny: image must be { data: Uint8Array, width, height, channels: 3 | 4 } with data.length = width·height·channels; received ${r.width}×${r.height}×${r.channels} (${r.data.length} bytes)`);
    }
    if (r.channels === 3) return { data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength), width: r.width, height: r.height, channels: 3 };
    img = sharp(r.data, { raw: { width: r.width, height: r.height, channels: r.channels } });
  } else {
    throw new InvalidArgumentError(`canny: image must be a file path, a Buffer or { data, width, height, channels }; received ${describeValue(input)}`);
  }
  try {
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data, width: info.width, height: info.height, channels: 3 };
  } catch (e) {
    throw new InvalidArgumentError(`canny: image is not a decodable image: ${(e as Error).message}`, { cause: e });
  }
}

/** Options of {@link canny}. */
export interface CannyOptions {
  /** Hysteresis low threshold on the L1 Sobel magnitude (floored; default 100, controlnet_aux's). */
  lowThreshold?: number;
  /** Hysteresis high threshold (floored; default 200). Swapped with the low one when smaller, as OpenCV does. */
  highThreshold?: number;
}

/**
 * Canny edges of an image, as ControlNet canny models expect them: an RGB image of the same size
 * whose three channels are equal, 255 on edges and 0 elsewhere.
 * @param image - a file path, an encoded image Buffer, or raw `{ data, width, height, channels: 3 | 4 }`
 *   (decoded and converted to RGB like every input image; alpha dropped)
 * @param options - `lowThreshold` (default 100), `highThreshold` (default 200): finite, ≥ 0
 * @returns the edge image (RGB, `width × height` as the input)
 * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for an undecodable image or a bad threshold.
 * @example
 * const edges = await canny('./photo.png', { lowThreshold: 100, highThreshold: 200 });
 * await sharp(edges.data, { raw: { width: edges.width, height: edges.height, channels: 3 } }).png().toFile('canny.png');
 */
export async function canny(image: ImageInput, options: CannyOptions = {}): Promise<DecodedImage> {
  const { lowThreshold = 100, highThreshold = 200, ...rest } = options ?? {};
  const unknown = Object.keys(rest);
  if (unknown.length) throw new InvalidArgumentError(`canny: unknown option ${unknown[0]}; the options are lowThreshold and highThreshold`);
  for (const [name, v] of [['lowThreshold', lowThreshold], ['highThreshold', highThreshold]] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new InvalidArgumentError(`canny: ${name} must be a finite number ≥ 0; received ${describeValue(v)}`);
    }
  }
  const img = await rgbPixels(image);
  const edges = await native(() => addon().canny(
    { data: new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.byteLength), shape: [img.height, img.width, 3] },
    lowThreshold, highThreshold));
  const n = img.width * img.height;
  const out = Buffer.alloc(n * 3);
  for (let i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = edges.data[i]; // HWC3
  return { data: out, width: img.width, height: img.height, channels: 3 };
}
