// Bindings for native/core/schedulers (diffusers' schedulers) and CPU random generators
// (torch.Generator('cpu')). Synchronous calls: scheduler arithmetic on latents is small.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "addon/bindings.h"
#include "addon/util.h"
#include "schedulers/scheduler.h"
#include "util/json.h"

namespace sd::addon {

namespace {

using schedulers::Scheduler;

double requireNumber(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throwInvalid(env, what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throwInvalid(env, what + " must be finite, got " + std::to_string(d));
  return d;
}

int64_t requireInteger(Napi::Env env, const Napi::Value& v, const std::string& what) {
  const double d = requireNumber(env, v, what);
  if (d != std::floor(d) || std::abs(d) > 9007199254740991.0)
    throwInvalid(env, what + " must be an integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

std::shared_ptr<Scheduler> scheduler(const Napi::CallbackInfo& info) {
  if (info.Length() < 1) throwInvalid(info.Env(), "missing scheduler handle");
  return unwrapHandle<Scheduler>(info.Env(), info[0], "scheduler");
}

// schedulerNames() → string[]
Napi::Value SchedulerNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& names = schedulers::schedulerNames();
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), names[i]);
  return out;
}

// createScheduler(className, configJson) → handle
Napi::Value CreateScheduler(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throwInvalid(env, "createScheduler(className, configJson): both arguments must be strings");
  const std::string className = info[0].As<Napi::String>().Utf8Value();
  const std::string text = info[1].As<Napi::String>().Utf8Value();
  return guarded(env, [&]() -> Napi::Value {
    Json config = Json::parse(text, className + " config");
    std::shared_ptr<Scheduler> s = schedulers::createScheduler(className, config);
    return wrapHandle(env, s);
  });
}

// schedulerSetTimesteps(handle, numInferenceSteps)
Napi::Value SchedulerSetTimesteps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = scheduler(info);
  const int64_t n = requireInteger(env, info[1], "numInferenceSteps");
  return guarded(env, [&]() -> Napi::Value {
    s->setTimesteps(n);
    return env.Undefined();
  });
}

// schedulerState(handle) → {name, order, numTrainTimesteps, initNoiseSigma, timesteps?, sigmas?, alphasCumprod}
Napi::Value SchedulerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = scheduler(info);
  return guarded(env, [&]() -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", s->name());
    o.Set("order", Napi::Number::New(env, static_cast<double>(s->order())));
    o.Set("numTrainTimesteps", Napi::Number::New(env, static_cast<double>(s->numTrainTimesteps())));
    o.Set("alphasCumprod", fromTensor(env, s->alphasCumprod()));
    if (s->timesteps().defined()) {
      o.Set("timesteps", fromTensor(env, s->timesteps()));
      o.Set("initNoiseSigma", Napi::Number::New(env, s->initNoiseSigma()));
      if (auto sig = s->sigmas()) o.Set("sigmas", fromTensor(env, *sig));
    }
    return o;
  });
}

// schedulerScaleModelInput(handle, sample, timestep) → tensor
Napi::Value SchedulerScaleModelInput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = scheduler(info);
  at::Tensor sample = toTensor(env, info[1], "sample");
  const double t = requireNumber(env, info[2], "timestep");
  return guarded(env, [&]() -> Napi::Value { return fromTensor(env, s->scaleModelInput(sample, t)); });
}

// schedulerStep(handle, modelOutput, timestep, sample, generator|null, eta) → {prevSample, predOriginalSample?}
Napi::Value SchedulerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = scheduler(info);
  at::Tensor modelOutput = toTensor(env, info[1], "modelOutput");
  const double t = requireNumber(env, info[2], "timestep");
  at::Tensor sample = toTensor(env, info[3], "sample");
  std::shared_ptr<at::Generator> gen;
  if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull())
    gen = unwrapHandle<at::Generator>(env, info[4], "generator");
  double eta = 0.0;
  if (info.Length() > 5 && !info[5].IsUndefined() && !info[5].IsNull()) eta = requireNumber(env, info[5], "eta");
  return guarded(env, [&]() -> Napi::Value {
    at::Tensor prev = s->step(modelOutput, t, sample, gen.get(), eta);
    Napi::Object o = Napi::Object::New(env);
    o.Set("prevSample", fromTensor(env, prev));
    if (s->predOriginalSample().defined()) o.Set("predOriginalSample", fromTensor(env, s->predOriginalSample()));
    return o;
  });
}

// schedulerAddNoise(handle, original, noise, timestep) → tensor
Napi::Value SchedulerAddNoise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = scheduler(info);
  at::Tensor original = toTensor(env, info[1], "original");
  at::Tensor noise = toTensor(env, info[2], "noise");
  const double t = requireNumber(env, info[3], "timestep");
  return guarded(env, [&]() -> Napi::Value { return fromTensor(env, s->addNoise(original, noise, t)); });
}

// schedulerSetBeginIndex(handle, beginIndex)
Napi::Value SchedulerSetBeginIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = scheduler(info);
  const int64_t i = requireInteger(env, info[1], "beginIndex");
  return guarded(env, [&]() -> Napi::Value {
    s->setBeginIndex(i);
    return env.Undefined();
  });
}

// createGenerator(seed: bigint) → handle: torch.Generator('cpu').manual_seed(seed) (seed taken mod 2^64).
Napi::Value CreateGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBigInt()) throwInvalid(env, "createGenerator(seed): seed must be a bigint");
  bool lossless = false;
  const uint64_t seed = info[0].As<Napi::BigInt>().Uint64Value(&lossless);  // two's complement for negatives
  return guarded(env, [&]() -> Napi::Value {
    auto gen = std::make_shared<at::Generator>(at::make_generator<at::CPUGeneratorImpl>(seed));
    return wrapHandle(env, gen);
  });
}

// generatorRandn(handle, shape) → float32 tensor: torch.randn(shape, generator=g)
Napi::Value GeneratorRandn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsArray()) throwInvalid(env, "generatorRandn(generator, shape): shape must be an array");
  auto gen = unwrapHandle<at::Generator>(env, info[0], "generator");
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<int64_t> shape;
  double numel = 1;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const int64_t d = requireInteger(env, a.Get(i), "shape[" + std::to_string(i) + "]");
    if (d < 0) throwInvalid(env, "shape[" + std::to_string(i) + "] must be >= 0");
    shape.push_back(d);
    numel *= static_cast<double>(d);
  }
  if (numel > 1e9) throwInvalid(env, "randn: shape has too many elements");
  return guarded(env, [&]() -> Napi::Value {
    return fromTensor(env, at::randn(shape, *gen, at::TensorOptions().dtype(at::kFloat)));
  });
}

}  // namespace

void InitSchedulers(Napi::Env env, Napi::Object exports) {
  exports.Set("schedulerNames", Napi::Function::New(env, SchedulerNames));
  exports.Set("createScheduler", Napi::Function::New(env, CreateScheduler));
  exports.Set("schedulerSetTimesteps", Napi::Function::New(env, SchedulerSetTimesteps));
  exports.Set("schedulerState", Napi::Function::New(env, SchedulerState));
  exports.Set("schedulerScaleModelInput", Napi::Function::New(env, SchedulerScaleModelInput));
  exports.Set("schedulerStep", Napi::Function::New(env, SchedulerStep));
  exports.Set("schedulerAddNoise", Napi::Function::New(env, SchedulerAddNoise));
  exports.Set("schedulerSetBeginIndex", Napi::Function::New(env, SchedulerSetBeginIndex));
  exports.Set("createGenerator", Napi::Function::New(env, CreateGenerator));
  exports.Set("generatorRandn", Napi::Function::New(env, GeneratorRandn));
}

}  // namespace sd::addon
