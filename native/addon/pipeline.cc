// Bindings for native/core/pipelines: StableDiffusionPipeline and StableDiffusionXLPipeline behind
// one set of functions that dispatch on the handle's kind (types/addon/pipeline.ts): load, info,
// generate (on the thread pool, with progress through a thread-safe function and cancellation
// through an abort token), the toggles, dispose, and the test bindings encodeText and pipelineTestFaults.
#include <atomic>
#include <cmath>
#include <limits>

#include "addon/bindings.h"
#include "addon/pipeline_common.h"
#include "addon/util.h"
#include "pipelines/stable_diffusion.h"
#include "pipelines/stable_diffusion_xl.h"

namespace sd::addon {

namespace {

using pipelines::StableDiffusionPipeline;
using pipelines::StableDiffusionXLPipeline;

Napi::Value LoadPipeline(const Napi::CallbackInfo& info) { return loadPipelineAsync(info); }

Napi::Value PipelineInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (handleOf<StableDiffusionXLPipeline>(info[0])) {
    auto p = unwrapHandle<StableDiffusionXLPipeline>(env, info[0], "pipeline");
    const auto& i = p->info();
    Napi::Object o = pipelineInfoObject(env, i);
    o.Set("forceZerosForEmptyPrompt", Napi::Boolean::New(env, i.forceZerosForEmptyPrompt));
    o.Set("requiresAestheticsScore", Napi::Boolean::New(env, i.requiresAestheticsScore));
    return o;
  }
  auto p = unwrapHandle<StableDiffusionPipeline>(env, info[0], "pipeline");
  Napi::Object o = pipelineInfoObject(env, p->info());
  o.Set("forceZerosForEmptyPrompt", Napi::Boolean::New(env, false));
  o.Set("requiresAestheticsScore", Napi::Boolean::New(env, false));
  return o;
}

/// A required [a, b] pair of numbers.
std::vector<double> pairField(Napi::Env env, const Napi::Object& r, const char* key) {
  Napi::Value v = r.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 2)
    throwInvalid(env, std::string("request.") + key + " must be an array of two numbers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t k = 0; k < 2; ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) throwInvalid(env, std::string("request.") + key + " must be an array of two numbers");
    out.push_back(e.As<Napi::Number>().DoubleValue());
  }
  return out;
}

/// An optional number: NaN when absent (the core's "not given").
double optionalNumber(Napi::Env env, const Napi::Object& r, const char* key) {
  if (!r.Has(key) || r.Get(key).IsUndefined()) return std::numeric_limits<double>::quiet_NaN();
  return requireNumber(env, r, key, "request");
}

/// The SDXL fields of a NativeXLGenerateRequest (after the common ones).
void readXlFields(Napi::Env env, const Napi::Object& r, pipelines::XLGenerateRequest& req) {
  constexpr const char* kWhat = "request";
  optionalTensor(env, r, "inputIds2", req.inputIds2);
  optionalTensor(env, r, "negativeInputIds2", req.negativeInputIds2);
  optionalTensor(env, r, "promptWeights2", req.promptWeights2);
  optionalTensor(env, r, "negativePromptWeights2", req.negativePromptWeights2);
  optionalTensor(env, r, "imageLatents", req.imageLatents);
  req.negativePromptIsNone = requireBool(env, r, "negativePromptIsNone", kWhat);
  req.originalSize = pairField(env, r, "originalSize");
  req.cropsCoordsTopLeft = pairField(env, r, "cropsCoordsTopLeft");
  req.targetSize = pairField(env, r, "targetSize");
  req.aestheticScore = requireNumber(env, r, "aestheticScore", kWhat);
  req.negativeAestheticScore = requireNumber(env, r, "negativeAestheticScore", kWhat);
  req.denoisingEnd = optionalNumber(env, r, "denoisingEnd");
  req.denoisingStart = optionalNumber(env, r, "denoisingStart");
  req.img2img = requireBool(env, r, "img2img", kWhat);
}

// generate(pipeline, request, onStep?, abort?) → Promise<NativeGenerateResult>
Napi::Value Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "generate(pipeline, request, onStep?, abort?)");
  Napi::Object r = info[1].As<Napi::Object>();
  if (handleOf<StableDiffusionXLPipeline>(info[0])) {
    auto pipe = unwrapHandle<StableDiffusionXLPipeline>(env, info[0], "pipeline");
    pipelines::XLGenerateRequest req;
    readGenerateRequest(env, r, req);
    readXlFields(env, r, req);
    return queueGenerate(info, std::move(pipe), std::move(req));
  }
  auto pipe = unwrapHandle<StableDiffusionPipeline>(env, info[0], "pipeline");
  pipelines::GenerateRequest req;
  readGenerateRequest(env, r, req);
  optionalTensor(env, r, "mask", req.mask);
  return queueGenerate(info, std::move(pipe), std::move(req));
}

// encodeText(pipeline, { inputIds, promptWeights?, inputIds2?, promptWeights2?, clipSkip }) →
// Promise<{ embeds [P, 77·k, D], pooled? [P, projection_dim] }> (float32; pooled for SDXL)
Napi::Value EncodeText(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "encodeText(pipeline, request)");
  Napi::Object r = info[1].As<Napi::Object>();
  at::Tensor ids = toTensor(env, r.Get("inputIds"), "inputIds"), weights, ids2, weights2;
  optionalTensor(env, r, "promptWeights", weights);
  optionalTensor(env, r, "inputIds2", ids2);
  optionalTensor(env, r, "promptWeights2", weights2);
  const int64_t clipSkip = static_cast<int64_t>(requireNumber(env, r, "clipSkip", "request"));
  if (handleOf<StableDiffusionXLPipeline>(info[0])) {
    auto p = unwrapHandle<StableDiffusionXLPipeline>(env, info[0], "pipeline");
    using R = StableDiffusionXLPipeline::Encoded;
    return runAsync<R>(
        env, [p, ids, ids2, weights, weights2, clipSkip] { return p->encodeText(ids, ids2, weights, weights2, clipSkip); },
        [](Napi::Env env, R& e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("embeds", fromTensor(env, e.embeds));
          o.Set("pooled", fromTensor(env, e.pooled));
          return o;
        });
  }
  auto p = unwrapHandle<StableDiffusionPipeline>(env, info[0], "pipeline");
  return runAsync<at::Tensor>(
      env, [p, ids, weights, clipSkip] { return p->encodeText(ids, weights, clipSkip); },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("embeds", fromTensor(env, t));
        return o;
      });
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
  disposeHandle<StableDiffusionXLPipeline>(info[0]);
  return info.Env().Undefined();
}

Napi::Value LivePipelines(const Napi::CallbackInfo& info) {
  const int64_t n = StableDiffusionPipeline::liveCount() + StableDiffusionXLPipeline::liveCount();
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

// pipelineSetOptimizations(h, {sliceSize: number|'auto'|'max', sdpa: boolean|'auto', vaeSlicing,
// vaeTiling, channelsLast, fp8: ''|'e4m3fn'|'e5m2', offload: ''|'model'|'sequential', cudaGraphs}): the full
// set (lib/ validated it), recorded now and applied at the start of the next generate; the core
// checks what only it can (libtorch has SDPA, the device is CUDA, known format and mode).
Napi::Value PipelineSetOptimizations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info[0], "pipeline");
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "pipelineSetOptimizations(pipeline, options)");
  constexpr const char* kWhat = "optimizations";
  Napi::Object o = info[1].As<Napi::Object>();
  pipelines::Optimizations next;
  Napi::Value slice = o.Get("sliceSize");
  if (slice.IsString()) {
    const std::string v = slice.As<Napi::String>().Utf8Value();
    next.attention.sliceSize = v == "max" ? nn::AttentionOptions::kSliceMax : nn::AttentionOptions::kSliceAuto;
  } else {
    next.attention.sliceSize = static_cast<int64_t>(requireNumber(env, o, "sliceSize", kWhat));
  }
  next.attention.backend = parseSdpa(env, o.Get("sdpa"));
  next.vaeSlicing = requireBool(env, o, "vaeSlicing", kWhat);
  next.vaeTiling = requireBool(env, o, "vaeTiling", kWhat);
  next.channelsLast = requireBool(env, o, "channelsLast", kWhat);
  next.fp8Format = requireString(env, o, "fp8", kWhat);
  next.offload = requireString(env, o, "offload", kWhat);
  next.cudaGraphs = requireBool(env, o, "cudaGraphs", kWhat);
  guarded(env, [&] { p->setOptimizations(next); });
  return env.Undefined();
}

// pipelineComponents(h) → [{name, className, dtype, parameters, bytes}] as held now
Napi::Value PipelineComponents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info[0], "pipeline");
  return componentsArray(env, p->components());
}

// pipelineTestFaults(h, {nonFiniteDecodes: n}): test-only; the next n VAE decodes return NaN
// (PipelineBase::setTestNonFiniteDecodes), to test the float32 re-decode without a float16 GPU.
Napi::Value PipelineTestFaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info[0], "pipeline");
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "pipelineTestFaults(pipeline, faults)");
  const double n = requireNumber(env, info[1].As<Napi::Object>(), "nonFiniteDecodes", "faults");
  if (!(n >= 0 && n <= 1000)) throwInvalid(env, "faults.nonFiniteDecodes must be an integer in [0, 1000]");
  p->setTestNonFiniteDecodes(static_cast<int>(n));
  return env.Undefined();
}

// pipelineCudaGraphStats(h) → {captures, replays, invalidations, graphs}: test-only; what
// enableCudaGraphs did on this pipeline (PipelineBase::cudaGraphStats; zeros while it is off).
Napi::Value PipelineCudaGraphStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info[0], "pipeline");
  pipelines::UNetGraphs::Stats s;
  guarded(env, [&] { s = p->cudaGraphStats(); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("captures", Napi::Number::New(env, static_cast<double>(s.captures)));
  o.Set("replays", Napi::Number::New(env, static_cast<double>(s.replays)));
  o.Set("invalidations", Napi::Number::New(env, static_cast<double>(s.invalidations)));
  o.Set("graphs", Napi::Number::New(env, static_cast<double>(s.graphs)));
  return o;
}

// noiseBankStats() → {filled, served}: test-only; the process-wide noise-bank counters
// (runtime::noiseBankStats), proof that denoising loops draw their noise up front.
Napi::Value NoiseBankStatsFn(const Napi::CallbackInfo& info) {
  const runtime::NoiseBankStats s = runtime::noiseBankStats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("filled", Napi::Number::New(info.Env(), static_cast<double>(s.filled)));
  o.Set("served", Napi::Number::New(info.Env(), static_cast<double>(s.served)));
  return o;
}

}  // namespace

void InitPipeline(Napi::Env env, Napi::Object exports) {
  exports.Set("loadPipeline", Napi::Function::New(env, LoadPipeline));
  exports.Set("pipelineInfo", Napi::Function::New(env, PipelineInfo));
  exports.Set("generate", Napi::Function::New(env, Generate));
  exports.Set("createAbortToken", Napi::Function::New(env, CreateAbortToken));
  exports.Set("abortToken", Napi::Function::New(env, AbortTokenFn));
  exports.Set("disposePipeline", Napi::Function::New(env, DisposePipeline));
  exports.Set("pipelineSetOptimizations", Napi::Function::New(env, PipelineSetOptimizations));
  exports.Set("pipelineComponents", Napi::Function::New(env, PipelineComponents));
  // test-only (types/addon/pipeline.ts PipelineTestingAddon)
  exports.Set("livePipelines", Napi::Function::New(env, LivePipelines));
  exports.Set("encodeText", Napi::Function::New(env, EncodeText));
  exports.Set("pipelineTestFaults", Napi::Function::New(env, PipelineTestFaults));
  exports.Set("noiseBankStats", Napi::Function::New(env, NoiseBankStatsFn));
  exports.Set("pipelineCudaGraphStats", Napi::Function::New(env, PipelineCudaGraphStats));
}

}  // namespace sd::addon
