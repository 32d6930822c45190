// The Canny edge detector as OpenCV's cv2.Canny(image, low, high) computes it with its defaults
// (apertureSize 3, L2gradient false) — what controlnet_aux's CannyDetector and the A1111 ControlNet
// extension call to make the control image of a canny ControlNet (they call it on the RGB image
// directly, with no blur first).
#pragma once

#include <ATen/ATen.h>

namespace sd::pipelines {

/// Canny edges of an image, OpenCV 4.x `cv::Canny` (imgproc/src/canny.cpp) step for step:
///  1. Sobel 3×3 derivatives dx, dy of every channel (int, border BORDER_REPLICATE); per pixel the
///     channel with the largest L1 magnitude |dx| + |dy| gives dx, dy and the magnitude (the first
///     channel on ties), as OpenCV does for multi-channel input.
///  2. Thresholds floored to integers (swapped when low > high).
///  3. Non-maximum suppression for pixels with magnitude > low, along the gradient direction
///     quantised with tan(22.5°) in 15-bit fixed point (13573): horizontal — greater than the left
///     neighbour and ≥ the right; vertical — greater than the one above and ≥ the one below;
///     diagonal — greater than both neighbours on the diagonal (↘ when dx, dy have the same sign,
///     else ↙); magnitudes outside the image count as 0.
///  4. Hysteresis: surviving pixels with magnitude > high are edges, and so is every surviving
///     pixel 8-connected to an edge through surviving pixels.
/// No Gaussian blur (cv2.Canny has none; blur the image first for that).
/// @param image uint8 [H, W, C] (C ≥ 1; RGB for a control image), H, W ≥ 1, on the CPU.
/// @returns uint8 [H, W]: 255 on edges, 0 elsewhere.
/// @throws SdException E_INVALID_ARGUMENT for another dtype or rank, an empty image, or a
///   threshold that is negative or not finite.
at::Tensor canny(const at::Tensor& image, double lowThreshold, double highThreshold);

}  // namespace sd::pipelines
