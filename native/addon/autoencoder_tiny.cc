// Bindings for native/core/models/autoencoder_tiny (diffusers AutoencoderTiny, TAESD): load,
// encode, decode, scale/unscale latents, forward, dispose. Every computation runs on a worker thread.
#include <ATen/ATen.h>

#include "addon/bindings.h"
#include "addon/util.h"
#include "models/autoencoder_tiny.h"
#include "pipelines/pipeline_base.h"
#include "runtime/dtype_support.h"

namespace sd::addon {

namespace {

using models::AutoencoderTiny;

std::shared_ptr<AutoencoderTiny> tinyOf(const Napi::CallbackInfo& info) {
  return unwrapHandle<AutoencoderTiny>(info.Env(), info.Length() ? info[0] : info.Env().Undefined(), "AutoencoderTiny");
}

Napi::Value asyncTensor(Napi::Env env, std::function<at::Tensor()> work) {
  return runAsync<at::Tensor>(
      env, [work] { return work().to(at::kCPU).contiguous(); },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// loadAutoencoderTiny(dir, {dtype?, variant?, device?}) → Promise<handle>
Napi::Value LoadAutoencoderTiny(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throwInvalid(env, "loadAutoencoderTiny(dir, options?): dir must be a string");
  const std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = Napi::Object::New(env);
  if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
    if (!info[1].IsObject()) throwInvalid(env, "loadAutoencoderTiny: options must be an object");
    o = info[1].As<Napi::Object>();
  }
  const std::string dtypeName = getString(o, "dtype", "float32");
  at::ScalarType dtype = at::kFloat;
  if (dtypeName == "float16") dtype = at::kHalf;
  else if (dtypeName == "bfloat16") dtype = at::kBFloat16;
  else if (dtypeName != "float32")
    throwInvalid(env, "loadAutoencoderTiny: options.dtype must be 'float32', 'float16' or 'bfloat16', got '" + dtypeName + "'");
  const std::string deviceName = getString(o, "device", "cpu");
  const std::string variant = getString(o, "variant", "");
  return runAsync<std::shared_ptr<AutoencoderTiny>>(
      env,
      [dir, deviceName, dtype, variant] {
        // parsed here so that a missing CUDA or a bad index rejects the promise (E_DEVICE_UNAVAILABLE)
        return AutoencoderTiny::fromPretrained(dir, pipelines::parseDevice(deviceName), dtype, variant);
      },
      [](Napi::Env env, std::shared_ptr<AutoencoderTiny>& m) -> Napi::Value { return wrapHandle(env, m); });
}

// autoencoderTinyInfo(handle) → config summary
Napi::Value AutoencoderTinyInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = tinyOf(info);
  const auto& c = m->config();
  Napi::Object o = Napi::Object::New(env);
  o.Set("vaeScaleFactor", Napi::Number::New(env, static_cast<double>(m->vaeScaleFactor())));
  o.Set("decoderUpsampling", Napi::Number::New(env, static_cast<double>(c.decoderUpsampling())));
  o.Set("scalingFactor", Napi::Number::New(env, c.scalingFactor));
  o.Set("latentMagnitude", Napi::Number::New(env, c.latentMagnitude));
  o.Set("latentShift", Napi::Number::New(env, c.latentShift));
  o.Set("latentChannels", Napi::Number::New(env, static_cast<double>(c.latentChannels)));
  o.Set("inChannels", Napi::Number::New(env, static_cast<double>(c.inChannels)));
  o.Set("outChannels", Napi::Number::New(env, static_cast<double>(c.outChannels)));
  o.Set("forceUpcast", Napi::Boolean::New(env, c.forceUpcast));
  o.Set("dtype", runtime::dtypeName(m->dtype()));
  o.Set("device", m->device().str());
  return o;
}

// autoencoderTinyDecode(handle, latents [B, latent, h, w]) → Promise<image [B, out, h·u, w·u]>
Napi::Value AutoencoderTinyDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = tinyOf(info);
  if (info.Length() < 2) throwInvalid(env, "autoencoderTinyDecode(handle, latents): latents is required");
  at::Tensor z = toTensor(env, info[1], "latents");
  return asyncTensor(env, [m, z] { return m->decode(z).to(at::kFloat); });
}

// autoencoderTinyEncode(handle, image [B, in, H, W]) → Promise<latents [B, latent, h, w]>
Napi::Value AutoencoderTinyEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = tinyOf(info);
  if (info.Length() < 2) throwInvalid(env, "autoencoderTinyEncode(handle, image): image is required");
  at::Tensor x = toTensor(env, info[1], "image");
  return asyncTensor(env, [m, x] { return m->encode(x).to(at::kFloat); });
}

// autoencoderTinyScaleLatents(handle, x, unscale: boolean) → Promise<TensorData>
Napi::Value AutoencoderTinyScaleLatents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = tinyOf(info);
  if (info.Length() < 3 || !info[2].IsBoolean())
    throwInvalid(env, "autoencoderTinyScaleLatents(handle, latents, unscale): unscale must be a boolean");
  at::Tensor x = toTensor(env, info[1], "latents");
  const bool unscale = info[2].As<Napi::Boolean>().Value();
  if (!at::isFloatingType(x.scalar_type())) throwInvalid(env, "autoencoderTinyScaleLatents: latents must be a float tensor");
  return asyncTensor(env, [m, x, unscale] { return unscale ? m->unscaleLatents(x) : m->scaleLatents(x); });
}

// autoencoderTinyForward(handle, image) → Promise<{latents, latentsUint8, decoded}>
Napi::Value AutoencoderTinyForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = tinyOf(info);
  if (info.Length() < 2) throwInvalid(env, "autoencoderTinyForward(handle, image): image is required");
  at::Tensor x = toTensor(env, info[1], "image");
  return runAsync<AutoencoderTiny::ForwardResult>(
      env,
      [m, x] {
        AutoencoderTiny::ForwardResult r = m->forward(x);
        r.latents = r.latents.to(at::kFloat).cpu().contiguous();
        r.latentsUint8 = r.latentsUint8.cpu().contiguous();
        r.decoded = r.decoded.to(at::kFloat).cpu().contiguous();
        return r;
      },
      [](Napi::Env env, AutoencoderTiny::ForwardResult& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("latents", fromTensor(env, r.latents));
        o.Set("latentsUint8", fromTensor(env, r.latentsUint8));
        o.Set("decoded", fromTensor(env, r.decoded));
        return o;
      });
}

Napi::Value DisposeAutoencoderTiny(const Napi::CallbackInfo& info) {
  if (info.Length() > 0) disposeHandle<AutoencoderTiny>(info[0]);
  return info.Env().Undefined();
}

}  // namespace

void InitAutoencoderTiny(Napi::Env env, Napi::Object exports) {
  exports.Set("loadAutoencoderTiny", Napi::Function::New(env, LoadAutoencoderTiny));
  exports.Set("autoencoderTinyInfo", Napi::Function::New(env, AutoencoderTinyInfo));
  exports.Set("autoencoderTinyDecode", Napi::Function::New(env, AutoencoderTinyDecode));
  exports.Set("autoencoderTinyEncode", Napi::Function::New(env, AutoencoderTinyEncode));
  exports.Set("autoencoderTinyScaleLatents", Napi::Function::New(env, AutoencoderTinyScaleLatents));
  exports.Set("autoencoderTinyForward", Napi::Function::New(env, AutoencoderTinyForward));
  exports.Set("disposeAutoencoderTiny", Napi::Function::New(env, DisposeAutoencoderTiny));
}

}  // namespace sd::addon
