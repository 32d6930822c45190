// Bindings for the VAE a pipeline decodes with and its preview decoder (native/core/pipelines/
// pipeline_vae.cc): diffusers' `pipe.vae = …` with an AutoencoderKL or AutoencoderTiny, the
// pipeline's own VAE as a handle, and the AutoencoderTiny that 'taesd' previews decode with.
#include "addon/bindings.h"
#include "addon/pipeline_common.h"
#include "addon/util.h"
#include "models/autoencoder_kl.h"
#include "models/autoencoder_tiny.h"

namespace sd::addon {

namespace {

using models::AutoencoderKL;
using models::AutoencoderTiny;

// pipelineSetVae(pipeline, vae: AutoencoderKL | AutoencoderTiny handle | null) → Promise<void>
// (waits for a generation in flight on the thread pool; null = the pipeline's own VAE)
Napi::Value PipelineSetVae(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info.Length() ? info[0] : env.Undefined(), "pipeline");
  Napi::Value v = info.Length() > 1 ? info[1] : env.Undefined();
  std::shared_ptr<AutoencoderKL> kl;
  std::shared_ptr<AutoencoderTiny> tiny;
  if (handleOf<AutoencoderTiny>(v)) tiny = unwrapHandle<AutoencoderTiny>(env, v, "vae");
  else if (!v.IsNull() && !v.IsUndefined()) kl = unwrapHandle<AutoencoderKL>(env, v, "vae");
  return runAsync<bool>(
      env,
      [p, kl, tiny] {
        if (tiny) p->setVae(tiny);
        else p->setVae(kl);
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// pipelineVae(pipeline) → {inUse: 'own' | 'AutoencoderKL' | 'AutoencoderTiny', vaeScaleFactor, own: VaeHandle}
Napi::Value PipelineVae(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info.Length() ? info[0] : env.Undefined(), "pipeline");
  Napi::Object o = Napi::Object::New(env);
  o.Set("inUse", p->vaeInUse());
  o.Set("vaeScaleFactor", Napi::Number::New(env, static_cast<double>(p->vaeScaleFactor())));
  o.Set("own", wrapHandle(env, p->ownVae()));
  return o;
}

// pipelineSetPreviewDecoder(pipeline, decoder: AutoencoderTiny handle | null) → Promise<void>
Napi::Value PipelineSetPreviewDecoder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = unwrapAnyPipeline(env, info.Length() ? info[0] : env.Undefined(), "pipeline");
  Napi::Value v = info.Length() > 1 ? info[1] : env.Undefined();
  std::shared_ptr<AutoencoderTiny> tiny;
  if (!v.IsNull() && !v.IsUndefined()) tiny = unwrapHandle<AutoencoderTiny>(env, v, "previewDecoder");
  return runAsync<bool>(
      env,
      [p, tiny] {
        p->setPreviewDecoder(tiny);
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

}  // namespace

void InitPipelineVae(Napi::Env env, Napi::Object exports) {
  exports.Set("pipelineSetVae", Napi::Function::New(env, PipelineSetVae));
  exports.Set("pipelineVae", Napi::Function::New(env, PipelineVae));
  exports.Set("pipelineSetPreviewDecoder", Napi::Function::New(env, PipelineSetPreviewDecoder));
}

}  // namespace sd::addon
