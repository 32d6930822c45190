// Bindings for native/core/pipelines: load, info, generate (on the thread pool, with progress
// through a thread-safe function and cancellation through an abort token), dispose.
#include <atomic>

#include "addon/bindings.h"
#include "addon/pipeline_common.h"
#include "addon/util.h"
#include "pipelines/stable_diffusion.h"

namespace sd::addon {

namespace {

using pipelines::StableDiffusionPipeline;

Napi::Value LoadPipeline(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throwInvalid(env, "loadPipeline(path, options): path must be a string");
  pipelines::LoadOptions opts;
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    opts.device = getString(o, "device", "cpu");
    opts.dtype = parseDtype(env, getString(o, "dtype", "float32"));
    opts.variant = getString(o, "variant", "");
    opts.singleFile = getBool(o, "singleFile", false);
    opts.configDir = getString(o, "configDir", "");
    opts.threads = static_cast<int>(getNumber(o, "threads", 0));
  }
  return runAsync<std::shared_ptr<StableDiffusionPipeline>>(
      env, [path, opts] { return StableDiffusionPipeline::load(path, opts); },
      [](Napi::Env env, std::shared_ptr<StableDiffusionPipeline>& p) { return wrapHandle(env, p); });
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

  std::shared_ptr<AbortFlag> abort;
  if (info.Length() > 3 && info[3].IsExternal()) abort = unwrapHandle<AbortFlag>(env, info[3], "abort token");
  auto* w = new GenerateWorker<StableDiffusionPipeline, pipelines::GenerateRequest>(env, pipe, std::move(req), abort, info.Length() > 2 ? info[2] : env.Undefined());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
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

}  // namespace

void InitPipeline(Napi::Env env, Napi::Object exports) {
  exports.Set("loadPipeline", Napi::Function::New(env, LoadPipeline));
  exports.Set("pipelineInfo", Napi::Function::New(env, PipelineInfo));
  exports.Set("generate", Napi::Function::New(env, Generate));
  exports.Set("createAbortToken", Napi::Function::New(env, CreateAbortToken));
  exports.Set("abortToken", Napi::Function::New(env, AbortTokenFn));
  exports.Set("disposePipeline", Napi::Function::New(env, DisposePipeline));
  exports.Set("livePipelines", Napi::Function::New(env, LivePipelines));
}

}  // namespace sd::addon
