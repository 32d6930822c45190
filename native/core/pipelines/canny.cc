// OpenCV 4.x modules/imgproc/src/canny.cpp (cv::Canny, apertureSize 3, L2gradient false), as called by controlnet_aux CannyDetector (cv2.Canny(img, low, high)) — an independent implementation.
#include "pipelines/canny.h"

#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "nn/weights.h"
#include "util/error.h"

namespace sd::pipelines {

namespace {

constexpr int kCannyShift = 15;
// tan(22.5°) = √2 − 1 in 15-bit fixed point, rounded: 13573 (OpenCV's TG22).
constexpr int64_t kTg22 = 13573;

}  // namespace

at::Tensor canny(const at::Tensor& image, double lowThreshold, double highThreshold) {
  if (!image.defined() || image.dim() != 3 || image.scalar_type() != at::kByte)
    fail(codes::kInvalidArgument, "canny: image must be a uint8 tensor [height, width, channels]" +
                                      (image.defined() ? ", got " + nn::shapeString(image.sizes()) : std::string()));
  const int64_t H = image.size(0), W = image.size(1), C = image.size(2);
  if (H == 0 || W == 0 || C == 0) fail(codes::kInvalidArgument, "canny: the image is empty: " + nn::shapeString(image.sizes()));
  for (double t : {lowThreshold, highThreshold})
    if (!std::isfinite(t) || t < 0)
      fail(codes::kInvalidArgument, "canny: thresholds must be finite non-negative numbers, got " + std::to_string(t));
  if (lowThreshold > highThreshold) std::swap(lowThreshold, highThreshold);
  const int64_t low = static_cast<int64_t>(std::floor(lowThreshold));    // cvFloor
  const int64_t high = static_cast<int64_t>(std::floor(highThreshold));

  at::Tensor src = image.contiguous().cpu();
  const uint8_t* px = src.data_ptr<uint8_t>();
  auto at_ = [&](int64_t y, int64_t x, int64_t c) -> int64_t {  // BORDER_REPLICATE
    y = y < 0 ? 0 : (y >= H ? H - 1 : y);
    x = x < 0 ? 0 : (x >= W ? W - 1 : x);
    return px[(y * W + x) * C + c];
  };

  // 1. Sobel 3×3 per channel; keep the channel of largest |dx| + |dy| (the first on ties).
  std::vector<int64_t> dx(H * W), dy(H * W), mag((H + 2) * (W + 2), 0);  // mag zero-padded by 1
  auto magAt = [&](int64_t y, int64_t x) -> int64_t& { return mag[(y + 1) * (W + 2) + (x + 1)]; };
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      int64_t best = -1, bx = 0, by = 0;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t gx = (at_(y - 1, x + 1, c) - at_(y - 1, x - 1, c)) + 2 * (at_(y, x + 1, c) - at_(y, x - 1, c)) +
                           (at_(y + 1, x + 1, c) - at_(y + 1, x - 1, c));
        const int64_t gy = (at_(y + 1, x - 1, c) - at_(y - 1, x - 1, c)) + 2 * (at_(y + 1, x, c) - at_(y - 1, x, c)) +
                           (at_(y + 1, x + 1, c) - at_(y - 1, x + 1, c));
        const int64_t m = std::llabs(gx) + std::llabs(gy);
        if (m > best) {
          best = m;
          bx = gx;
          by = gy;
        }
      }
      dx[y * W + x] = bx;
      dy[y * W + x] = by;
      magAt(y, x) = best;
    }

  // 3. Non-maximum suppression: 0 = not an edge, 1 = candidate, 2 = edge (magnitude > high).
  std::vector<uint8_t> map(H * W, 0);
  std::vector<int64_t> stack;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const int64_t m = magAt(y, x);
      if (m <= low) continue;
      const int64_t xs = dx[y * W + x], ys = dy[y * W + x];
      const int64_t ax = std::llabs(xs), ay = std::llabs(ys) << kCannyShift;
      const int64_t tg22x = ax * kTg22;
      bool keep;
      if (ay < tg22x) {  // gradient ≈ horizontal: compare left and right
        keep = m > magAt(y, x - 1) && m >= magAt(y, x + 1);
      } else {
        const int64_t tg67x = tg22x + (ax << (kCannyShift + 1));
        if (ay > tg67x) {  // ≈ vertical: compare above and below
          keep = m > magAt(y - 1, x) && m >= magAt(y + 1, x);
        } else {  // diagonal: ↘ when the signs agree, else ↙
          const int64_t s = (xs ^ ys) < 0 ? -1 : 1;
          keep = m > magAt(y - 1, x - s) && m > magAt(y + 1, x + s);
        }
      }
      if (!keep) continue;
      if (m > high) {
        map[y * W + x] = 2;
        stack.push_back(y * W + x);
      } else {
        map[y * W + x] = 1;
      }
    }

  // 4. Hysteresis: grow the edges through 8-connected candidates.
  while (!stack.empty()) {
    const int64_t i = stack.back();
    stack.pop_back();
    const int64_t y = i / W, x = i % W;
    for (int64_t oy = -1; oy <= 1; ++oy)
      for (int64_t ox = -1; ox <= 1; ++ox) {
        const int64_t ny = y + oy, nx = x + ox;
        if (ny < 0 || ny >= H || nx < 0 || nx >= W) continue;
        uint8_t& v = map[ny * W + nx];
        if (v == 1) {
          v = 2;
          stack.push_back(ny * W + nx);
        }
      }
  }

  at::Tensor out = at::zeros({H, W}, at::kByte);  // [H, W]
  uint8_t* o = out.data_ptr<uint8_t>();
  for (int64_t i = 0; i < H * W; ++i) o[i] = map[i] == 2 ? 255 : 0;
  return out;
}

}  // namespace sd::pipelines
