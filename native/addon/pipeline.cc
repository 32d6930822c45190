// Bindings for native/core/pipelines: load, info, generate (on the thread pool, with progress
// through a thread-safe function and cancellation through an abort token), dispose.
#include <atomic>
#include <cmath>

#include "addon/bindings.h"
#include "addon/pipeline_common.h"
#include "addon/util.h"
#include "pipelines/stable_diffusion.h"

namespace sd::addon {

namespace {

using pipelines::StableDiffusionPipeline;

Napi::Value LoadPipeline(const Napi::CallbackInfo& info) {
  return loadPipelineAsync<StableDiffusionPipeline>(info, "loadPipeline");
}

Napi::Value PipelineInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapHandle<StableDiffusionPipeline>(env, info[0], "pipeline");
  return pipelineInfoObject(env, p->info());
}

Napi::Value Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto pipe = unwrapHandle<StableDiffusionPipeline>(env, info[0], "pipeline");
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "generate(pipeline, request, onStep?, abort?)");
  Napi::Object r = info[1].As<Napi::Object>();
  pipelines::GenerateRequest req;
  readGenerateRequest(env, r, req);

  return queueGenerate(info, std::move(pipe), std::move(req));
}

Napi::Value CreateAbortToken(const Napi::CallbackInfo& info) {
  return wrapHandle(info.Env(), std::make_shared<AbortFlag>(false));
}

Napi::Value AbortTokenFn(const Napi::CallbackInfo& info) {
  auto flag = unwrapHandle<AbortFlag>(info.Env(), info[0], "abort token");
  flag->store(true);
  return info.Env().Undefined();
}

Napi::Value DisposePipeline(const Napi::CallbackInfo& info) {
  disposeHandle<StableDiffusionPipeline>(info[0]);
  return info.Env().Undefined();
}

Napi::Value LivePipelines(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(StableDiffusionPipeline::liveCount()));
}

// pipelineSetOptimizations(h, {sliceSize: number|'auto'|'max', sdpa, vaeSlicing, vaeTiling,
// channelsLast, fp8: ''|'e4m3fn'|'e5m2', offload: ''|'model'|'sequential'}): the full set,
// validated now and applied at the start of the next generate.
Napi::Value PipelineSetOptimizations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info[0], "pipeline");
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "pipelineSetOptimizations(pipeline, options)");
  Napi::Object o = info[1].As<Napi::Object>();
  pipelines::Optimizations next;
  Napi::Value slice = o.Get("sliceSize");
  if (slice.IsString()) {
    const std::string v = slice.As<Napi::String>().Utf8Value();
    if (v == "auto") next.attention.sliceSize = nn::AttentionOptions::kSliceAuto;
    else if (v == "max") next.attention.sliceSize = nn::AttentionOptions::kSliceMax;
    else throwInvalid(env, "sliceSize must be 'auto', 'max' or a positive integer; received '" + v + "'");
  } else if (slice.IsNumber()) {
    const double v = slice.As<Napi::Number>().DoubleValue();
    if (!(v >= 0) || v != std::floor(v) || v > 1e9) throwInvalid(env, "sliceSize must be 'auto', 'max' or a positive integer");
    next.attention.sliceSize = static_cast<int64_t>(v);
  }
  next.attention.backend = parseSdpa(env, o.Get("sdpa"));
  next.vaeSlicing = getBool(o, "vaeSlicing", false);
  next.vaeTiling = getBool(o, "vaeTiling", false);
  next.channelsLast = getBool(o, "channelsLast", false);
  next.fp8Format = getString(o, "fp8", "");
  next.offload = getString(o, "offload", "");
  guarded(env, [&] { p->setOptimizations(next); });
  return env.Undefined();
}

// pipelineComponents(h) → [{name, className, dtype, parameters, bytes}] as held now
Napi::Value PipelineComponents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info[0], "pipeline");
  const auto comps = p->components();
  Napi::Array out = Napi::Array::New(env, comps.size());
  for (size_t k = 0; k < comps.size(); ++k) {
    Napi::Object co = Napi::Object::New(env);
    co.Set("name", comps[k].name);
    co.Set("className", comps[k].className);
    co.Set("dtype", comps[k].dtype);
    co.Set("parameters", Napi::Number::New(env, static_cast<double>(comps[k].parameters)));
    co.Set("bytes", Napi::Number::New(env, static_cast<double>(comps[k].bytes)));
    out.Set(static_cast<uint32_t>(k), co);
  }
  return out;
}

}  // namespace

void InitPipeline(Napi::Env env, Napi::Object exports) {
  exports.Set("pipelineSetOptimizations", Napi::Function::New(env, PipelineSetOptimizations));
  exports.Set("pipelineComponents", Napi::Function::New(env, PipelineComponents));
  exports.Set("loadPipeline", Napi::Function::New(env, LoadPipeline));
  exports.Set("pipelineInfo", Napi::Function::New(env, PipelineInfo));
  exports.Set("generate", Napi::Function::New(env, Generate));
  exports.Set("createAbortToken", Napi::Function::New(env, CreateAbortToken));
  exports.Set("abortToken", Napi::Function::New(env, AbortTokenFn));
  exports.Set("disposePipeline", Napi::Function::New(env, DisposePipeline));
  exports.Set("livePipelines", Napi::Function::New(env, LivePipelines));
}

}  // namespace sd::addon
