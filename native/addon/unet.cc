// Bindings for native/core/models/unet_2d_condition (diffusers UNet2DConditionModel):
// loadUNet, unetForward, unetSetAttention, disposeUNet; and, for the tests of the UNet's kernels,
// groupNormSilu, geglu and setFusedGroupNorm (native/core/nn/group_norm_silu).
#include <ATen/core/grad_mode.h>
#include <ATen/ATen.h>

#include <cmath>
#include <mutex>
#include <regex>
#include <utility>

#include "addon/bindings.h"
#include "addon/util.h"
#include "models/unet_2d_condition.h"
#include "nn/group_norm_silu.h"

namespace sd::addon {

namespace {

// A loaded UNet as JS holds it. Forward calls run one at a time (computeMutex); attention
// settings made while one runs are stored as pending and applied before the next forward, so
// unetSetAttention never blocks the event loop and never changes options under a running call.
struct UNetHandle {
  std::unique_ptr<models::UNet2DConditionModel> model;
  std::mutex computeMutex;
  std::mutex optionsMutex;
  nn::AttentionOptions pending;
};

at::ScalarType parseDtype(Napi::Env env, const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "float16") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  throwInvalid(env, "loadUNet: dtype must be 'float32', 'float16' or 'bfloat16', got '" + s + "'");
}

at::Device parseDevice(Napi::Env env, const std::string& s) {
  static const std::regex re("^(cpu|cuda)(:([0-9]{1,2}))?$");
  std::smatch m;
  if (!std::regex_match(s, m, re)) throwInvalid(env, "loadUNet: device must be 'cpu', 'cuda' or 'cuda:N', got '" + s + "'");
  if (m[1] == "cpu") return at::Device(at::kCPU);
  if (!at::hasCUDA()) throw makeError(env, codes::kDeviceUnavailable, "loadUNet: device '" + s + "' requested but this build/machine has no CUDA");
  return m[3].matched ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(m[3]))) : at::Device(at::kCUDA);
}

// loadUNet(dir, {dtype?, variant?, device?}) → Promise<handle>
Napi::Value LoadUNet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throwInvalid(env, "loadUNet(dir, options?): dir must be a string");
  const std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Object opts = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  const at::ScalarType dtype = parseDtype(env, getString(opts, "dtype", "float32"));
  const at::Device device = parseDevice(env, getString(opts, "device", "cpu"));
  const std::string variant = getString(opts, "variant", "");
  if (variant.find('/') != std::string::npos) throwInvalid(env, "loadUNet: variant must be a plain name like 'fp16'");
  using Ptr = std::shared_ptr<UNetHandle>;
  return runAsync<Ptr>(
      env,
      [dir, dtype, device, variant] {
        auto h = std::make_shared<UNetHandle>();
        h->model = models::UNet2DConditionModel::fromPretrained(dir, device, dtype, variant);
        return h;
      },
      [](Napi::Env env, Ptr& h) -> Napi::Value { return wrapHandle(env, h); });
}

// unetForward(handle, {sample, timestep, encoderHiddenStates, textEmbeds?, timeIds?}) → Promise<TensorData>
Napi::Value UNetForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject())
    throwInvalid(env, "unetForward(handle, {sample, timestep, encoderHiddenStates, textEmbeds?, timeIds?})");
  auto h = unwrapHandle<UNetHandle>(env, info[0], "unet");
  Napi::Object a = info[1].As<Napi::Object>();
  at::Tensor sample = toTensor(env, a.Get("sample"), "sample");
  at::Tensor ehs = toTensor(env, a.Get("encoderHiddenStates"), "encoderHiddenStates");
  at::Tensor timestep;
  Napi::Value tv = a.Get("timestep");
  if (tv.IsNumber()) {
    double t = tv.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(t)) throwInvalid(env, "timestep must be a finite number");
    // As diffusers turns a Python int/float into a tensor: int64 when integral, float64 otherwise.
    timestep = t == std::floor(t) && std::fabs(t) < 9e15 ? at::scalar_tensor(static_cast<int64_t>(t), at::kLong)
                                                         : at::scalar_tensor(t, at::kDouble);
  } else {
    timestep = toTensor(env, tv, "timestep");
  }
  auto added = std::make_shared<models::UNetAddedCond>();
  bool hasAdded = false;
  if (!a.Get("textEmbeds").IsUndefined()) { added->textEmbeds = toTensor(env, a.Get("textEmbeds"), "textEmbeds"); hasAdded = true; }
  if (!a.Get("timeIds").IsUndefined()) { added->timeIds = toTensor(env, a.Get("timeIds"), "timeIds"); hasAdded = true; }
  // ControlNet residuals (down_block_additional_residuals + mid_block_additional_residual)
  auto control = std::make_shared<models::UNetControlResiduals>();
  const bool hasControl = a.Get("downBlockAdditionalResiduals").IsArray();
  if (hasControl) {
    Napi::Array down = a.Get("downBlockAdditionalResiduals").As<Napi::Array>();
    for (uint32_t j = 0; j < down.Length(); ++j) control->down.push_back(toTensor(env, down.Get(j), "downBlockAdditionalResiduals"));
    control->mid = toTensor(env, a.Get("midBlockAdditionalResidual"), "midBlockAdditionalResidual");
  }
  return runAsync<at::Tensor>(
      env,
      [h, sample, timestep, ehs, added, hasAdded, control, hasControl] {
        std::lock_guard<std::mutex> compute(h->computeMutex);
        {
          std::lock_guard<std::mutex> lock(h->optionsMutex);
          h->model->setAttentionOptions(h->pending);
        }
        at::NoGradGuard noGrad;
        return h->model->forward(sample, timestep, ehs, hasAdded ? added.get() : nullptr, hasControl ? control.get() : nullptr)
            .to(at::kCPU);
      },
      [](Napi::Env env, at::Tensor& out) -> Napi::Value { return fromTensor(env, out); });
}

// unetSetAttention(handle, {sliceSize?: number|'auto'|'max', sdpa?: boolean}) → the settings in effect
Napi::Value UNetSetAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "unetSetAttention(handle, {sliceSize?, sdpa?})");
  auto h = unwrapHandle<UNetHandle>(env, info[0], "unet");
  Napi::Object o = info[1].As<Napi::Object>();
  std::lock_guard<std::mutex> lock(h->optionsMutex);
  nn::AttentionOptions next = h->pending;
  Napi::Value s = o.Get("sliceSize");
  if (s.IsString()) {
    const std::string v = s.As<Napi::String>().Utf8Value();
    if (v == "auto") next.sliceSize = nn::AttentionOptions::kSliceAuto;
    else if (v == "max") next.sliceSize = nn::AttentionOptions::kSliceMax;
    else throwInvalid(env, "sliceSize must be 'auto', 'max' or a non-negative integer, got '" + v + "'");
  } else if (s.IsNumber()) {
    const double v = s.As<Napi::Number>().DoubleValue();
    if (!(v >= 0) || v != std::floor(v) || v > 1e9)
      throwInvalid(env, "sliceSize must be 'auto', 'max' or a non-negative integer, got " + std::to_string(v));
    next.sliceSize = static_cast<int64_t>(v);
  } else if (!s.IsUndefined() && !s.IsNull()) {
    throwInvalid(env, "sliceSize must be 'auto', 'max' or a non-negative integer");
  } else if (s.IsNull()) {
    next.sliceSize = 0;
  }
  if (!o.Get("sdpa").IsUndefined()) next.backend = parseSdpa(env, o.Get("sdpa"));
  h->pending = next;

  Napi::Object out = Napi::Object::New(env);
  if (next.sliceSize == nn::AttentionOptions::kSliceAuto) out.Set("sliceSize", "auto");
  else if (next.sliceSize == nn::AttentionOptions::kSliceMax) out.Set("sliceSize", "max");
  else out.Set("sliceSize", Napi::Number::New(env, static_cast<double>(next.sliceSize)));
  // SDPA runs only where libtorch has it (>= 2.0) and slicing is off (and, for 'auto', where it
  // is the faster kernel for this model's device and dtype); otherwise the math path.
  out.Set("sdpa", Napi::Boolean::New(env, nn::usesSdpa(next, h->model->device(), h->model->dtype())));
  return out;
}

Napi::Value DisposeUNet(const Napi::CallbackInfo& info) {
  if (info.Length() > 0) disposeHandle<UNetHandle>(info[0]);
  return info.Env().Undefined();
}

// The {dtype: 'float32' | 'bfloat16', impl: 'fused' | 'aten'} options of the kernel test bindings
// below (defaults float32, fused): the compute dtype and whether sd-native's kernel runs.
std::pair<at::ScalarType, bool> kernelTestOptions(Napi::Env env, const Napi::Object& o) {
  const std::string dtypeName = o.Has("dtype") ? o.Get("dtype").As<Napi::String>().Utf8Value() : "float32";
  const std::string impl = o.Has("impl") ? o.Get("impl").As<Napi::String>().Utf8Value() : "fused";
  if (dtypeName != "float32" && dtypeName != "bfloat16") throwInvalid(env, "dtype must be 'float32' or 'bfloat16'");
  if (impl != "fused" && impl != "aten") throwInvalid(env, "impl must be 'fused' or 'aten'");
  return {dtypeName == "bfloat16" ? at::kBFloat16 : at::kFloat, impl == "fused"};
}

// groupNormSilu(x, groups, gamma, beta, {eps, dtype, impl, silu, channelsLast}) → float32 result:
// x [N, C, *] cast to dtype ('float32' | 'bfloat16'; channelsLast: 4-D x in that layout), then
// GroupNorm (+ SiLU unless silu false) by impl 'fused' (nn::groupNormSiluCpu, errors included) or
// 'aten' (at::group_norm, at::silu); the output converted to float32.
Napi::Value GroupNormSilu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[1].IsNumber() || !info[4].IsObject())
    throwInvalid(env, "groupNormSilu(x, groups, gamma, beta, options)");
  const at::Tensor x = toTensor(env, info[0], "x"), gamma = toTensor(env, info[2], "gamma"),
                   beta = toTensor(env, info[3], "beta");
  const int64_t groups = info[1].As<Napi::Number>().Int64Value();
  const Napi::Object o = info[4].As<Napi::Object>();
  const double eps = o.Has("eps") ? o.Get("eps").As<Napi::Number>().DoubleValue() : 1e-5;
  const bool silu = !o.Has("silu") || o.Get("silu").ToBoolean().Value();
  const bool channelsLast = o.Has("channelsLast") && o.Get("channelsLast").ToBoolean().Value();
  const std::pair<at::ScalarType, bool> options = kernelTestOptions(env, o);
  const at::ScalarType dtype = options.first;
  const bool fused = options.second;
  return runAsync<at::Tensor>(
      env,
      [=]() -> at::Tensor {
        at::NoGradGuard noGrad;
        at::Tensor xd = x.to(dtype), g = gamma.to(dtype), b = beta.to(dtype);
        if (channelsLast) xd = xd.contiguous(at::MemoryFormat::ChannelsLast);
        at::Tensor y = fused ? nn::groupNormSiluCpu(xd, groups, g, b, eps, silu)
                                       : at::group_norm(xd, groups, g, b, eps);
        if (!fused && silu) y = at::silu(y);
        return y.to(at::kFloat).contiguous();
      },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// geglu(proj, {dtype, impl}) → float32 result: proj [..., 2F] cast to dtype, then hidden · gelu(gate)
// by impl 'fused' (nn::gegluCpu, errors included) or 'aten' (chunk, at::gelu, mul).
Napi::Value Geglu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "geglu(proj, options)");
  const at::Tensor proj = toTensor(env, info[0], "proj");
  const Napi::Object o = info[1].As<Napi::Object>();
  const std::pair<at::ScalarType, bool> options = kernelTestOptions(env, o);
  const at::ScalarType dtype = options.first;
  const bool fused = options.second;
  return runAsync<at::Tensor>(
      env,
      [=]() -> at::Tensor {
        at::NoGradGuard noGrad;
        const at::Tensor p = proj.to(dtype);
        at::Tensor y;
        if (fused) {
          y = nn::gegluCpu(p);
        } else {
          auto parts = p.chunk(2, -1);
          y = parts[0] * at::gelu(parts[1]);
        }
        return y.to(at::kFloat).contiguous();
      },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// setFusedGroupNorm(on) → the previous setting: whether nn::GroupNorm::withSilu uses the fused
// CPU kernel (process-wide; for A/B tests).
Napi::Value SetFusedGroupNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBoolean()) throwInvalid(env, "setFusedGroupNorm(on: boolean)");
  const bool before = nn::fusedGroupNormEnabled();
  nn::setFusedGroupNormEnabled(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(env, before);
}

}  // namespace

void InitUNet(Napi::Env env, Napi::Object exports) {
  exports.Set("loadUNet", Napi::Function::New(env, LoadUNet));
  exports.Set("unetForward", Napi::Function::New(env, UNetForward));
  exports.Set("unetSetAttention", Napi::Function::New(env, UNetSetAttention));
  exports.Set("disposeUNet", Napi::Function::New(env, DisposeUNet));
  exports.Set("groupNormSilu", Napi::Function::New(env, GroupNormSilu));
  exports.Set("setFusedGroupNorm", Napi::Function::New(env, SetFusedGroupNorm));
  exports.Set("geglu", Napi::Function::New(env, Geglu));
}

}  // namespace sd::addon
