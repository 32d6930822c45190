/** native/addon/canny.cc: OpenCV's Canny edge detector (the ControlNet canny preprocessor). */
import type { TensorData } from './tensor.js';

export interface CannyAddon {
  /** image uint8 `[H, W, C]` → uint8 `[H, W]` (255 = edge), on the thread pool. E_INVALID_ARGUMENT for bad input or thresholds. */
  canny(image: TensorData<Uint8Array>, lowThreshold: number, highThreshold: number): Promise<TensorData<Uint8Array>>;
}
