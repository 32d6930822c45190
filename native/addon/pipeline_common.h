// What the pipeline bindings (pipeline.cc, lora.cc) share: dtype/JSON conversions, the
// pipelineInfo object, the common generate-request fields, the loader, and GenerateWorker, the AsyncWorker that
// runs Pipeline::generate(Request, onStep, aborted) on the thread pool, reports each step through a
// thread-safe function, polls an abort token, and resolves {images?, latents, initialLatents,
// timesteps, timings, vaeUpcast?} or rejects with a coded error.
#pragma once

#include <napi.h>

#include <atomic>
#include <cmath>
#include <optional>
#include <memory>
#include <string>

#include "addon/util.h"
#include "models/controlnet_model.h"
#include "pipelines/stable_diffusion.h"
#include "pipelines/stable_diffusion_xl.h"
#include "util/json.h"

namespace sd::addon {

using AbortFlag = std::atomic<bool>;

inline at::ScalarType parseDtype(Napi::Env env, const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "float16") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  throwInvalid(env, "dtype must be \"float32\", \"float16\" or \"bfloat16\"; received \"" + s + "\"");
}

inline Napi::Value JsonToJs(Napi::Env env, const Json& j) {
  Napi::Object JSON = env.Global().Get("JSON").As<Napi::Object>();
  return JSON.Get("parse").As<Napi::Function>().Call(JSON, {Napi::String::New(env, j.dump())});
}

inline Json JsToJson(Napi::Env env, const Napi::Value& v, const std::string& what) {
  Napi::Object JSON = env.Global().Get("JSON").As<Napi::Object>();
  Napi::Value s = JSON.Get("stringify").As<Napi::Function>().Call(JSON, {v});
  if (!s.IsString()) throwInvalid(env, what + " must be a JSON-serialisable object");
  return Json::parse(s.As<Napi::String>().Utf8Value(), what);
}

/// The JS array of NativeComponentInfo objects.
inline Napi::Array componentsArray(Napi::Env env, const std::vector<pipelines::ComponentInfo>& components) {
  Napi::Array comps = Napi::Array::New(env, components.size());
  for (size_t k = 0; k < components.size(); ++k) {
    const auto& c = components[k];
    Napi::Object co = Napi::Object::New(env);
    co.Set("name", c.name);
    co.Set("className", c.className);
    co.Set("dtype", c.dtype);
    co.Set("parameters", Napi::Number::New(env, static_cast<double>(c.parameters)));
    co.Set("bytes", Napi::Number::New(env, static_cast<double>(c.bytes)));
    comps.Set(static_cast<uint32_t>(k), co);
  }
  return comps;
}

/// The JS object of pipelineInfo().
inline Napi::Object pipelineInfoObject(Napi::Env env, const pipelines::PipelineInfo& i) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("family", i.family);
  o.Set("className", i.className);
  o.Set("modelPath", i.modelPath);
  o.Set("vaeScaleFactor", Napi::Number::New(env, static_cast<double>(i.vaeScaleFactor)));
  o.Set("sampleSize", Napi::Number::New(env, static_cast<double>(i.sampleSize)));
  Napi::Array dirs = Napi::Array::New(env, i.tokenizerDirs.size());
  for (size_t k = 0; k < i.tokenizerDirs.size(); ++k) dirs.Set(static_cast<uint32_t>(k), i.tokenizerDirs[k]);
  o.Set("tokenizerDirs", dirs);
  o.Set("schedulerName", i.schedulerName);
  o.Set("schedulerConfig", JsonToJs(env, i.schedulerConfig));
  o.Set("device", i.device);
  o.Set("dtype", i.dtype);
  o.Set("components", componentsArray(env, i.components));
  return o;
}

/// The pipeline behind a StableDiffusionPipeline or StableDiffusionXLPipeline handle, for the
/// methods they share (toggles, LoRA, textual inversion). Errors as unwrapHandle.
inline std::shared_ptr<pipelines::PipelineBase> unwrapAnyPipeline(Napi::Env env, const Napi::Value& v, const char* what) {
  if (handleOf<pipelines::StableDiffusionXLPipeline>(v)) return unwrapHandle<pipelines::StableDiffusionXLPipeline>(env, v, what);
  return unwrapHandle<pipelines::StableDiffusionPipeline>(env, v, what);
}

/// `out` = the tensor at `r[key]` when present and not undefined.
inline void optionalTensor(Napi::Env env, const Napi::Object& r, const char* key, at::Tensor& out) {
  if (r.Has(key) && !r.Get(key).IsUndefined()) out = toTensor(env, r.Get(key), key);
}

/// Reads the fields of a NativeGenerateRequest shared by every pipeline into `req`. The request
/// is complete (lib/options.ts fills every default): required fields are read without defaults,
/// optional tensors are absent when unused. Range checks are the core's (its own invariants).
inline void readGenerateRequest(Napi::Env env, const Napi::Object& r, pipelines::GenerateRequest& req) {
  constexpr const char* kWhat = "request";
  req.inputIds = toTensor(env, r.Get("inputIds"), "inputIds");
  optionalTensor(env, r, "negativeInputIds", req.negativeInputIds);
  req.numImagesPerPrompt = static_cast<int64_t>(requireNumber(env, r, "numImagesPerPrompt", kWhat));
  req.numInferenceSteps = static_cast<int64_t>(requireNumber(env, r, "numInferenceSteps", kWhat));
  req.guidanceScale = requireNumber(env, r, "guidanceScale", kWhat);
  req.height = static_cast<int64_t>(requireNumber(env, r, "height", kWhat));
  req.width = static_cast<int64_t>(requireNumber(env, r, "width", kWhat));
  const double seed = requireNumber(env, r, "seed", kWhat);
  if (!(seed >= 0) || seed > 9007199254740991.0) throwInvalid(env, "seed must be a non-negative safe integer");
  req.seed = static_cast<uint64_t>(seed);
  if (r.Has("seeds") && !r.Get("seeds").IsUndefined()) {  // one per image (a list of generators)
    if (!r.Get("seeds").IsArray()) throwInvalid(env, "request.seeds must be an array of seeds");
    const Napi::Array seeds = r.Get("seeds").As<Napi::Array>();
    for (uint32_t i = 0; i < seeds.Length(); ++i) {
      const Napi::Value v = seeds.Get(i);
      const double s = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
      if (!(s >= 0) || s > 9007199254740991.0 || s != static_cast<double>(static_cast<uint64_t>(s)))
        throwInvalid(env, "request.seeds[" + std::to_string(i) + "] must be a non-negative safe integer");
      req.seeds.push_back(static_cast<uint64_t>(s));
    }
  }
  optionalTensor(env, r, "latents", req.latents);
  req.clipSkip = static_cast<int64_t>(requireNumber(env, r, "clipSkip", kWhat));
  req.eta = requireNumber(env, r, "eta", kWhat);
  req.outputLatent = requireString(env, r, "outputType", kWhat) == "latent";
  req.schedulerName = requireString(env, r, "schedulerName", kWhat);
  req.schedulerConfig = JsToJson(env, r.Get("schedulerConfig"), "schedulerConfig");
  optionalTensor(env, r, "image", req.image);
  if (r.Has("strength") && !r.Get("strength").IsUndefined()) req.strength = requireNumber(env, r, "strength", kWhat);
  req.loraScale = requireNumber(env, r, "loraScale", kWhat);
  optionalTensor(env, r, "promptWeights", req.promptWeights);
  optionalTensor(env, r, "negativePromptWeights", req.negativePromptWeights);
  // ControlNets (optional): [{controlnet: handle, image: uint8 [H, W, 3] | [H, W], scale, start, end}]
  if (r.Has("controlnets") && r.Get("controlnets").IsArray()) {
    Napi::Array a = r.Get("controlnets").As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) {
      if (!a.Get(k).IsObject()) throwInvalid(env, "controlnets[" + std::to_string(k) + "] must be an object");
      Napi::Object u = a.Get(k).As<Napi::Object>();
      pipelines::ControlNetUnit unit;
      unit.model = unwrapHandle<models::ControlNetModel>(env, u.Get("controlnet"), "controlnet");
      unit.image = toTensor(env, u.Get("image"), "controlnet image");
      unit.scale = requireNumber(env, u, "scale", "controlnet unit");
      unit.start = requireNumber(env, u, "start", "controlnet unit");
      unit.end = requireNumber(env, u, "end", "controlnet unit");
      req.controlnets.push_back(std::move(unit));
    }
    req.guessMode = requireBool(env, r, "guessMode", kWhat);
  }
}

/// One step as reported to JS: the numbers, and the step's preview images (uint8 [B, H, W, 3],
/// undefined when previews are off or not due this step).
struct StepReport {
  int64_t step;
  int64_t numSteps;
  double timestep;
  at::Tensor preview;
};

template <class Pipeline, class Request>
class GenerateWorker : public Napi::AsyncWorker {
 public:
  GenerateWorker(Napi::Env env, std::shared_ptr<Pipeline> pipe, Request req,
                 std::shared_ptr<AbortFlag> abort, Napi::Value onStep, std::optional<pipelines::PreviewKind> previews = {},
                 int64_t previewEvery = 1)
      : Napi::AsyncWorker(env, "sd-native:generate"),
        deferred_(Napi::Promise::Deferred::New(env)),
        pipe_(std::move(pipe)),
        req_(std::move(req)),
        abort_(std::move(abort)),
        previews_(previews),
        previewEvery_(previewEvery < 1 ? 1 : previewEvery) {
    if (onStep.IsFunction()) {
      tsfn_ = Napi::ThreadSafeFunction::New(env, onStep.As<Napi::Function>(), "sd-native:onStep", 0, 1);
      hasTsfn_ = true;
    }
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    auto onStep = [this](const pipelines::StepInfo& s) {
      if (!hasTsfn_) return;
      // The step's numbers, and its preview made here on the generating thread (none when off).
      auto* report = new StepReport{s.step, s.numSteps, s.timestep, {}};
      if (previews_ && s.latents.defined() && s.step % previewEvery_ == 0)
        report->preview = pipe_->previewImages(s.latents, *previews_);  // uint8 [B, H, W, 3], CPU
      const napi_status queued = tsfn_.NonBlockingCall(report, [](Napi::Env env, Napi::Function cb, StepReport* d) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("step", Napi::Number::New(env, static_cast<double>(d->step)));
        o.Set("numSteps", Napi::Number::New(env, static_cast<double>(d->numSteps)));
        o.Set("timestep", Napi::Number::New(env, d->timestep));
        if (d->preview.defined()) o.Set("preview", fromTensor(env, d->preview));
        delete d;
        try {
          cb.Call({o});
        } catch (const Napi::Error&) {
          // A throwing onStep must not take the process down; the generation continues.
        }
      });
      // a full queue (the JS thread still busy with the previous step) or a closing function
      // drops this report: the callback will never run, so free it here
      if (queued != napi_ok) delete report;
    };
    auto aborted = [this] { return abort_ && abort_->load(); };
    try {
      result_ = pipe_->generate(req_, onStep, aborted);
    } catch (...) {
      describeCurrentException(code_, message_);
      failed_ = true;
    }
    req_ = {};  // free inputs on the worker thread
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    release();
    if (failed_) {
      deferred_.Reject(makeError(env, code_, message_).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    if (result_.images.defined()) o.Set("images", fromTensor(env, result_.images));
    o.Set("latents", fromTensor(env, result_.latents));
    o.Set("initialLatents", fromTensor(env, result_.initialLatents));
    Napi::Array ts = Napi::Array::New(env, result_.timesteps.size());
    for (size_t i = 0; i < result_.timesteps.size(); ++i) ts.Set(static_cast<uint32_t>(i), result_.timesteps[i]);
    o.Set("timesteps", ts);
    Napi::Object timings = Napi::Object::New(env);
    timings.Set("encodeMs", result_.encodeMs);
    timings.Set("denoiseMs", result_.denoiseMs);
    timings.Set("decodeMs", result_.decodeMs);
    timings.Set("totalMs", result_.totalMs);
    o.Set("timings", timings);
    if (result_.vaeUpcast) o.Set("vaeUpcast", Napi::Boolean::New(env, true));
    if (result_.vaeAutoTiling) o.Set("vaeAutoTiling", Napi::Boolean::New(env, true));
    result_ = {};
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    release();
    deferred_.Reject(e.Value());
  }

 private:
  void release() {
    if (hasTsfn_) {
      tsfn_.Release();
      hasTsfn_ = false;
    }
  }
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Pipeline> pipe_;
  Request req_;
  std::shared_ptr<AbortFlag> abort_;
  std::optional<pipelines::PreviewKind> previews_;  // previews handed to onStep, or none
  int64_t previewEvery_ = 1;
  Napi::ThreadSafeFunction tsfn_;
  bool hasTsfn_ = false;
  pipelines::GenerateResult result_;
  bool failed_ = false;
  std::string code_, message_;
};


/// loadPipeline(path, options): parses pipelines::LoadOptions (complete: device, dtype,
/// singleFile and xl required) and loads a StableDiffusionXLPipeline (xl) or a
/// StableDiffusionPipeline on the thread pool; resolves to its handle.
inline Napi::Value loadPipelineAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
    throwInvalid(env, "loadPipeline(path, options): path must be a string and options an object");
  }
  constexpr const char* kWhat = "load options";
  pipelines::LoadOptions opts;
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = info[1].As<Napi::Object>();
  opts.device = requireString(env, o, "device", kWhat);
  opts.dtype = parseDtype(env, requireString(env, o, "dtype", kWhat));
  opts.variant = getString(o, "variant", "");      // optional: absent = the default weights file
  opts.singleFile = requireBool(env, o, "singleFile", kWhat);
  opts.configDir = getString(o, "configDir", "");  // optional: single files only
  opts.threads = static_cast<int>(getNumber(o, "threads", 0));  // optional: absent = libtorch's default
  if (requireBool(env, o, "xl", kWhat)) {
    using XL = pipelines::StableDiffusionXLPipeline;
    return runAsync<std::shared_ptr<XL>>(
        env, [path, opts] { return XL::load(path, opts); },
        [](Napi::Env env, std::shared_ptr<XL>& p) { return wrapHandle(env, p); });
  }
  using SD = pipelines::StableDiffusionPipeline;
  return runAsync<std::shared_ptr<SD>>(
      env, [path, opts] { return SD::load(path, opts); },
      [](Napi::Env env, std::shared_ptr<SD>& p) { return wrapHandle(env, p); });
}

/// Queues a generation: info = (pipeline, request, onStep?, abort?); `req` already read.
template <class Pipeline, class Request>
Napi::Value queueGenerate(const Napi::CallbackInfo& info, std::shared_ptr<Pipeline> pipe, Request req) {
  Napi::Env env = info.Env();
  std::shared_ptr<AbortFlag> abort;
  if (info.Length() > 3 && info[3].IsExternal()) abort = unwrapHandle<AbortFlag>(env, info[3], "abort token");
  // request.previews: '' | 'taesd' | 'latent2rgb', request.previewEvery (lib/ validated both)
  std::optional<pipelines::PreviewKind> previews;
  int64_t previewEvery = 1;
  Napi::Object r = info[1].As<Napi::Object>();
  const std::string kind = getString(r, "previews", "");
  if (kind == "taesd") previews = pipelines::PreviewKind::kTaesd;
  else if (kind == "latent2rgb") previews = pipelines::PreviewKind::kLatent2Rgb;
  else if (!kind.empty()) throwInvalid(env, "request.previews must be 'taesd' or 'latent2rgb', got '" + kind + "'");
  if (previews) {
    const double every = getNumber(r, "previewEvery", 1);
    if (!(every >= 1 && every <= 1e6) || every != std::floor(every))
      throwInvalid(env, "request.previewEvery must be a positive integer, got " + std::to_string(every));
    previewEvery = static_cast<int64_t>(every);
    if (*previews == pipelines::PreviewKind::kTaesd && !pipe->hasPreviewDecoder())
      throwInvalid(env, "previews 'taesd' need a preview decoder (an AutoencoderTiny given at load or with setPreviewDecoder)");
  }
  auto* w = new GenerateWorker<Pipeline, Request>(env, std::move(pipe), std::move(req), abort,
                                                  info.Length() > 2 ? info[2] : env.Undefined(), previews, previewEvery);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace sd::addon
