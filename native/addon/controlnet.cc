// Bindings for native/core/models/controlnet_model (diffusers ControlNetModel): loadControlNet,
// controlnetInfo, controlnetForward (test-only), disposeControlNet. A ControlNet handle is passed
// to the pipelines' generate requests (readControlNets, pipeline_common.h).
#include <ATen/core/grad_mode.h>
#include <ATen/ATen.h>

#include <cmath>

#include "addon/bindings.h"
#include "addon/pipeline_common.h"
#include "addon/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "loaders/controlnet_single_file.h"
#include "models/controlnet_model.h"
#include "util/json.h"

#include <filesystem>

namespace sd::addon {

namespace {

using ControlNetPtr = std::shared_ptr<models::ControlNetModel>;

// loadControlNet(dirOrFile, {dtype, device, variant?, config?}) → Promise<handle>: a diffusers folder, or an
// original-layout .safetensors file with `config` (a ControlNet config.json or its folder).
Napi::Value LoadControlNet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throwInvalid(env, "loadControlNet(dir, {dtype, device, variant?}): dir must be a string");
  const std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = info[1].As<Napi::Object>();
  const at::ScalarType dtype = parseDtype(env, requireString(env, o, "dtype", "ControlNet load options"));
  const std::string device = requireString(env, o, "device", "ControlNet load options");
  const std::string variant = getString(o, "variant", "");
  const std::string config = getString(o, "config", "");
  if (variant.find('/') != std::string::npos) throwInvalid(env, "loadControlNet: variant must be a plain name like 'fp16'");
  return runAsync<ControlNetPtr>(
      env,
      [dir, dtype, device, variant, config] {
        std::error_code ec;
        if (std::filesystem::is_regular_file(dir, ec))
          return ControlNetPtr(loaders::loadControlNetSingleFile(dir, config, pipelines::parseDevice(device), dtype));
        return ControlNetPtr(models::ControlNetModel::fromPretrained(dir, pipelines::parseDevice(device), dtype, variant));
      },
      [](Napi::Env env, ControlNetPtr& p) -> Napi::Value { return wrapHandle(env, p); });
}

// controlnetInfo(handle) → {sdxl, crossAttentionDim, conditioningChannels, conditioningDownscale, globalPoolConditions, parameters, dtype}
Napi::Value ControlNetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = unwrapHandle<models::ControlNetModel>(env, info.Length() > 0 ? info[0] : env.Undefined(), "controlnet");
  const auto& c = m->config();
  Napi::Object o = Napi::Object::New(env);
  o.Set("sdxl", Napi::Boolean::New(env, c.unet.additionEmbedType == "text_time"));
  o.Set("crossAttentionDim", Napi::Number::New(env, static_cast<double>(c.unet.crossAttentionDim.back())));
  o.Set("conditioningChannels", Napi::Number::New(env, static_cast<double>(c.conditioningChannels)));
  o.Set("conditioningDownscale", Napi::Number::New(env, static_cast<double>(c.conditioningDownscale())));
  o.Set("globalPoolConditions", Napi::Boolean::New(env, c.globalPoolConditions));
  int64_t params = 0;
  for (const auto& [name, t] : m->weights().tensors()) params += t.numel();
  o.Set("parameters", Napi::Number::New(env, static_cast<double>(params)));
  return o;
}

// controlnetForward(handle, {sample, timestep, encoderHiddenStates, controlnetCond, conditioningScale, guessMode,
// textEmbeds?, timeIds?}) → Promise<{down: TensorData[], mid: TensorData}>
Napi::Value ControlNetForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject())
    throwInvalid(env, "controlnetForward(handle, {sample, timestep, encoderHiddenStates, controlnetCond, ...})");
  auto m = unwrapHandle<models::ControlNetModel>(env, info[0], "controlnet");
  Napi::Object a = info[1].As<Napi::Object>();
  at::Tensor sample = toTensor(env, a.Get("sample"), "sample");
  at::Tensor ehs = toTensor(env, a.Get("encoderHiddenStates"), "encoderHiddenStates");
  at::Tensor cond = toTensor(env, a.Get("controlnetCond"), "controlnetCond");
  at::Tensor timestep = toTensor(env, a.Get("timestep"), "timestep");
  const double scale = requireNumber(env, a, "conditioningScale", "controlnetForward inputs");
  const bool guess = requireBool(env, a, "guessMode", "controlnetForward inputs");
  auto added = std::make_shared<models::UNetAddedCond>();
  optionalTensor(env, a, "textEmbeds", added->textEmbeds);
  optionalTensor(env, a, "timeIds", added->timeIds);
  const bool hasAdded = added->textEmbeds.defined() || added->timeIds.defined();
  return runAsync<models::UNetControlResiduals>(
      env,
      [m, sample, timestep, ehs, cond, scale, guess, added, hasAdded] {
        at::NoGradGuard noGrad;
        models::UNetControlResiduals r = m->forward(sample, timestep, ehs, cond, scale, guess, hasAdded ? added.get() : nullptr);
        for (auto& d : r.down) d = d.to(at::kCPU, at::kFloat);
        r.mid = r.mid.to(at::kCPU, at::kFloat);
        return r;
      },
      [](Napi::Env env, models::UNetControlResiduals& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        Napi::Array down = Napi::Array::New(env, r.down.size());
        for (size_t j = 0; j < r.down.size(); ++j) down.Set(static_cast<uint32_t>(j), fromTensor(env, r.down[j]));
        o.Set("down", down);
        o.Set("mid", fromTensor(env, r.mid));
        return o;
      });
}

// controlnetSaveOriginalLayout(dir, outFile) → Promise<number of tensors>: a diffusers ControlNet folder written
// in the original layout (control_model.* keys), for the tests of the single-file loader.
Napi::Value ControlNetSaveOriginalLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throwInvalid(env, "controlnetSaveOriginalLayout(dir, outFile)");
  const std::string dir = info[0].As<Napi::String>().Utf8Value();
  const std::string out = info[1].As<Napi::String>().Utf8Value();
  return runAsync<double>(
      env,
      [dir, out] {
        const Json config = Json::parseFile((std::filesystem::path(dir) / "config.json").string());
        io::StateDict w = io::loadComponentWeights(dir, "diffusion_pytorch_model");
        io::StateDict original = loaders::controlNetToOriginalLayout(w, config, dir);
        std::vector<std::pair<std::string, at::Tensor>> list(original.begin(), original.end());
        io::writeSafetensors(out, list, {{"format", "pt"}});
        return static_cast<double>(list.size());
      },
      [](Napi::Env env, double& n) -> Napi::Value { return Napi::Number::New(env, n); });
}

Napi::Value DisposeControlNet(const Napi::CallbackInfo& info) {
  if (info.Length() > 0) disposeHandle<models::ControlNetModel>(info[0]);
  return info.Env().Undefined();
}

}  // namespace

void InitControlNet(Napi::Env env, Napi::Object exports) {
  exports.Set("loadControlNet", Napi::Function::New(env, LoadControlNet));
  exports.Set("controlnetInfo", Napi::Function::New(env, ControlNetInfo));
  exports.Set("controlnetForward", Napi::Function::New(env, ControlNetForward));
  exports.Set("disposeControlNet", Napi::Function::New(env, DisposeControlNet));
  exports.Set("controlnetSaveOriginalLayout", Napi::Function::New(env, ControlNetSaveOriginalLayout));
}

}  // namespace sd::addon
