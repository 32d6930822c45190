// Bindings for native/core/pipelines/canny (OpenCV's cv2.Canny, the ControlNet canny preprocessor).
#include "addon/bindings.h"
#include "addon/util.h"
#include "pipelines/canny.h"

namespace sd::addon {

namespace {

// canny(image uint8 [H, W, C], low, high) → Promise<uint8 [H, W]> (255 = edge), on the thread pool
Napi::Value Canny(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber())
    throwInvalid(env, "canny(image, lowThreshold, highThreshold): the thresholds must be numbers");
  at::Tensor image = toTensor(env, info[0], "image");
  const double low = info[1].As<Napi::Number>().DoubleValue();
  const double high = info[2].As<Napi::Number>().DoubleValue();
  return runAsync<at::Tensor>(
      env, [image, low, high] { return pipelines::canny(image, low, high); },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

}  // namespace

void InitCanny(Napi::Env env, Napi::Object exports) { exports.Set("canny", Napi::Function::New(env, Canny)); }

}  // namespace sd::addon
