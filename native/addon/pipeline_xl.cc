// Bindings for native/core/pipelines/stable_diffusion_xl (diffusers' StableDiffusionXLPipeline /
// StableDiffusionXLImg2ImgPipeline): load, info, generate (thread pool, onStep TSFN, abort token
// from createAbortToken), dispose.
#include <cmath>
#include <limits>

#include "addon/bindings.h"
#include "addon/pipeline_common.h"
#include "addon/util.h"
#include "pipelines/stable_diffusion_xl.h"

namespace sd::addon {

namespace {

using pipelines::StableDiffusionXLPipeline;

Napi::Value LoadPipelineXl(const Napi::CallbackInfo& info) {
  return loadPipelineAsync<StableDiffusionXLPipeline>(info, "loadPipelineXl");
}

Napi::Value PipelineXlInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapHandle<StableDiffusionXLPipeline>(env, info[0], "pipeline");
  const auto& i = p->info();
  Napi::Object o = pipelineInfoObject(env, i);
  o.Set("forceZerosForEmptyPrompt", Napi::Boolean::New(env, i.forceZerosForEmptyPrompt));
  o.Set("requiresAestheticsScore", Napi::Boolean::New(env, i.requiresAestheticsScore));
  return o;
}

std::vector<double> pairField(Napi::Env env, const Napi::Object& r, const char* key) {
  if (!r.Has(key) || r.Get(key).IsUndefined()) return {};
  Napi::Value v = r.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 2)
    throwInvalid(env, std::string(key) + " must be an array of two numbers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t k = 0; k < 2; ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) throwInvalid(env, std::string(key) + " must be an array of two numbers");
    out.push_back(e.As<Napi::Number>().DoubleValue());
  }
  return out;
}

double optionalNumber(const Napi::Object& r, const char* key) {
  if (!r.Has(key) || r.Get(key).IsUndefined() || r.Get(key).IsNull()) return std::numeric_limits<double>::quiet_NaN();
  return getNumber(r, key, std::numeric_limits<double>::quiet_NaN());
}

Napi::Value GenerateXl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto pipe = unwrapHandle<StableDiffusionXLPipeline>(env, info[0], "pipeline");
  if (info.Length() < 2 || !info[1].IsObject()) throwInvalid(env, "generateXl(pipeline, request, onStep?, abort?)");
  Napi::Object r = info[1].As<Napi::Object>();
  pipelines::XLGenerateRequest req;
  readGenerateRequest(env, r, req);
  req.strength = getNumber(r, "strength", 0.3);
  optionalTensor(env, r, "inputIds2", req.inputIds2);
  optionalTensor(env, r, "negativeInputIds2", req.negativeInputIds2);
  optionalTensor(env, r, "promptWeights2", req.promptWeights2);
  optionalTensor(env, r, "negativePromptWeights2", req.negativePromptWeights2);
  optionalTensor(env, r, "imageLatents", req.imageLatents);
  req.negativePromptIsNone = getBool(r, "negativePromptIsNone", false);
  req.originalSize = pairField(env, r, "originalSize");
  req.cropsCoordsTopLeft = pairField(env, r, "cropsCoordsTopLeft");
  req.targetSize = pairField(env, r, "targetSize");
  req.aestheticScore = getNumber(r, "aestheticScore", 6.0);
  req.negativeAestheticScore = getNumber(r, "negativeAestheticScore", 2.5);
  req.denoisingEnd = optionalNumber(r, "denoisingEnd");
  req.denoisingStart = optionalNumber(r, "denoisingStart");
  req.img2img = getBool(r, "img2img", false);

  return queueGenerate(info, std::move(pipe), std::move(req));
}

// encodeTextXl(pipeline, ids [P, 77·k], ids2 | undefined, weights?, weights2?, clipSkip?) →
// Promise<{ embeds [P, 77·k, D1 + D2], pooled [P, projection_dim] }> (float32)
Napi::Value EncodeTextXl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapHandle<StableDiffusionXLPipeline>(env, info[0], "pipeline");
  if (info.Length() < 2) throwInvalid(env, "encodeTextXl(pipeline, ids, ids2?, weights?, weights2?, clipSkip?)");
  auto optional = [&](size_t i, const char* what) {
    at::Tensor t;
    if (info.Length() > i && !info[i].IsUndefined() && !info[i].IsNull()) t = toTensor(env, info[i], what);
    return t;
  };
  at::Tensor ids = toTensor(env, info[1], "ids");
  at::Tensor ids2 = optional(2, "ids2"), weights = optional(3, "weights"), weights2 = optional(4, "weights2");
  const int64_t clipSkip = info.Length() > 5 && info[5].IsNumber() ? info[5].As<Napi::Number>().Int64Value() : 0;
  using R = StableDiffusionXLPipeline::Encoded;
  return runAsync<R>(
      env, [p, ids, ids2, weights, weights2, clipSkip] { return p->encodeText(ids, ids2, weights, weights2, clipSkip); },
      [](Napi::Env env, R& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("embeds", fromTensor(env, r.embeds));
        o.Set("pooled", fromTensor(env, r.pooled));
        return o;
      });
}

Napi::Value DisposePipelineXl(const Napi::CallbackInfo& info) {
  disposeHandle<StableDiffusionXLPipeline>(info[0]);
  return info.Env().Undefined();
}

Napi::Value LivePipelinesXl(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(StableDiffusionXLPipeline::liveCount()));
}

}  // namespace

void InitPipelineXl(Napi::Env env, Napi::Object exports) {
  exports.Set("loadPipelineXl", Napi::Function::New(env, LoadPipelineXl));
  exports.Set("pipelineXlInfo", Napi::Function::New(env, PipelineXlInfo));
  exports.Set("generateXl", Napi::Function::New(env, GenerateXl));
  exports.Set("encodeTextXl", Napi::Function::New(env, EncodeTextXl));
  exports.Set("disposePipelineXl", Napi::Function::New(env, DisposePipelineXl));
  exports.Set("livePipelinesXl", Napi::Function::New(env, LivePipelinesXl));
}

}  // namespace sd::addon
