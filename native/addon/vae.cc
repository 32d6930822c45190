// Bindings for native/core/models/autoencoder_kl (diffusers AutoencoderKL): load, encode, decode,
// slicing/tiling options, dispose.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cmath>

#include "addon/bindings.h"
#include "addon/util.h"
#include "loaders/single_file_vae.h"
#include "models/autoencoder_kl.h"

namespace sd::addon {

namespace {

using models::AutoencoderKL;
using models::DiagonalGaussian;

at::ScalarType parseDtype(Napi::Env env, const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "float16") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  throwInvalid(env, "loadVae: options.dtype must be 'float32', 'float16' or 'bfloat16', got '" + s + "'");
}

at::Device parseDevice(Napi::Env env, const std::string& s) {
  if (s == "cpu") return at::kCPU;
  if (s == "cuda" || s.rfind("cuda:", 0) == 0) {
    int64_t index = -1;
    if (s.size() > 5) {
      const std::string idx = s.substr(5);
      if (idx.empty() || idx.size() > 3 || idx.find_first_not_of("0123456789") != std::string::npos)
        throwInvalid(env, "loadVae: options.device must be 'cpu', 'cuda' or 'cuda:<index>', got '" + s + "'");
      index = std::stoll(idx);
    }
    const int64_t count = at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
    if (count == 0 || index >= count)
      throw makeError(env, codes::kDeviceUnavailable,
                      "loadVae: device '" + s + "' is not available (" + std::to_string(count) +
                          " CUDA device(s) in this build/machine)");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index < 0 ? 0 : index));
  }
  throwInvalid(env, "loadVae: options.device must be 'cpu', 'cuda' or 'cuda:<index>', got '" + s + "'");
}

Napi::Object optionsObject(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return Napi::Object::New(info.Env());
  if (!info[i].IsObject()) throwInvalid(info.Env(), std::string(fn) + ": options must be an object");
  return info[i].As<Napi::Object>();
}

Napi::Object describe(Napi::Env env, const AutoencoderKL& m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("vaeScaleFactor", Napi::Number::New(env, static_cast<double>(m.vaeScaleFactor())));
  o.Set("scalingFactor", Napi::Number::New(env, m.scalingFactor()));
  o.Set("shiftFactor", m.config().shiftFactor ? Napi::Number::New(env, *m.config().shiftFactor) : env.Null());
  o.Set("forceUpcast", Napi::Boolean::New(env, m.forceUpcast()));
  o.Set("latentChannels", Napi::Number::New(env, static_cast<double>(m.config().latentChannels)));
  o.Set("inChannels", Napi::Number::New(env, static_cast<double>(m.config().inChannels)));
  o.Set("outChannels", Napi::Number::New(env, static_cast<double>(m.config().outChannels)));
  o.Set("sampleSize", Napi::Number::New(env, static_cast<double>(m.config().sampleSize)));
  o.Set("dtype", std::string(c10::toString(m.dtype())));
  o.Set("device", m.device().str());
  o.Set("slicing", Napi::Boolean::New(env, m.slicing()));
  o.Set("tiling", Napi::Boolean::New(env, m.tiling()));
  o.Set("tileSampleMinSize", Napi::Number::New(env, static_cast<double>(m.tileSampleMinSize())));
  o.Set("tileLatentMinSize", Napi::Number::New(env, static_cast<double>(m.tileLatentMinSize())));
  o.Set("tileOverlapFactor", Napi::Number::New(env, m.tileOverlapFactor()));
  return o;
}

// loadVae(dir, {dtype?, variant?, device?}) → Promise<handle>
Napi::Value LoadVae(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throwInvalid(env, "loadVae(dir, options?): dir must be a string");
  const std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = optionsObject(info, 1, "loadVae");
  const at::ScalarType dtype = parseDtype(env, getString(o, "dtype", "float32"));
  const at::Device device = parseDevice(env, getString(o, "device", "cpu"));
  const std::string variant = getString(o, "variant", "");
  return runAsync<std::shared_ptr<AutoencoderKL>>(
      env, [dir, device, dtype, variant] { return AutoencoderKL::fromPretrained(dir, device, dtype, variant); },
      [](Napi::Env env, std::shared_ptr<AutoencoderKL>& m) -> Napi::Value { return wrapHandle(env, m); });
}

// loadVaeSingleFile(file, configDir, {dtype?, device?}) → Promise<handle>: a standalone original-layout
// VAE file with the config of the diffusers VAE folder configDir (loaders/single_file_vae.h)
Napi::Value LoadVaeSingleFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throwInvalid(env, "loadVaeSingleFile(file, configDir, options?): file and configDir must be strings");
  const std::string file = info[0].As<Napi::String>().Utf8Value();
  const std::string configDir = info[1].As<Napi::String>().Utf8Value();
  Napi::Object o = optionsObject(info, 2, "loadVaeSingleFile");
  const at::ScalarType dtype = parseDtype(env, getString(o, "dtype", "float32"));
  const at::Device device = parseDevice(env, getString(o, "device", "cpu"));
  return runAsync<std::shared_ptr<AutoencoderKL>>(
      env, [file, configDir, device, dtype] { return loaders::loadSingleFileVae(file, configDir, device, dtype); },
      [](Napi::Env env, std::shared_ptr<AutoencoderKL>& m) -> Napi::Value { return wrapHandle(env, m); });
}

// vaeInfo(handle) → config summary and current options
Napi::Value VaeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = unwrapHandle<AutoencoderKL>(env, info.Length() ? info[0] : env.Undefined(), "vae");
  return describe(env, *m);
}

// vaeDecode(handle, latents [B, latent, h, w]) → Promise<TensorData> image [B, out, h·f, w·f]
Napi::Value VaeDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = unwrapHandle<AutoencoderKL>(env, info.Length() ? info[0] : env.Undefined(), "vae");
  if (info.Length() < 2) throwInvalid(env, "vaeDecode(handle, latents): latents is required");
  at::Tensor z = toTensor(env, info[1], "latents");
  return runAsync<at::Tensor>(
      env, [m, z] { return m->decode(z).to(at::kCPU); },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// vaeEncode(handle, image [B, in, H, W], seed?) → Promise<{moments, mean, logvar, std, sample?}>
Napi::Value VaeEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = unwrapHandle<AutoencoderKL>(env, info.Length() ? info[0] : env.Undefined(), "vae");
  if (info.Length() < 2) throwInvalid(env, "vaeEncode(handle, image, seed?): image is required");
  at::Tensor image = toTensor(env, info[1], "image");
  std::optional<uint64_t> seed;
  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsNumber()) throwInvalid(env, "vaeEncode: seed must be a number");
    const double s = info[2].As<Napi::Number>().DoubleValue();
    if (!(s >= 0) || s != std::floor(s) || s > 9007199254740991.0)
      throwInvalid(env, "vaeEncode: seed must be a non-negative safe integer, got " + std::to_string(s));
    seed = static_cast<uint64_t>(s);
  }
  struct Result {
    DiagonalGaussian dist;
    at::Tensor sample;
  };
  return runAsync<Result>(
      env,
      [m, image, seed] {
        Result r{m->encode(image), at::Tensor()};
        if (seed) {
          at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(*seed);  // torch.Generator().manual_seed(seed)
          r.sample = r.dist.sample(&gen).to(at::kCPU);
        }
        r.dist.moments = r.dist.moments.to(at::kCPU);
        r.dist.mean = r.dist.mean.to(at::kCPU);
        r.dist.logvar = r.dist.logvar.to(at::kCPU);
        r.dist.std = r.dist.std.to(at::kCPU);
        return r;
      },
      [](Napi::Env env, Result& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("moments", fromTensor(env, r.dist.moments));
        o.Set("mean", fromTensor(env, r.dist.mean));
        o.Set("logvar", fromTensor(env, r.dist.logvar));
        o.Set("std", fromTensor(env, r.dist.std));
        if (r.sample.defined()) o.Set("sample", fromTensor(env, r.sample));
        return o;
      });
}

// vaeSetOptions(handle, {slicing?, tiling?, tileSize?, tileOverlap?}) → the resulting vaeInfo
Napi::Value VaeSetOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = unwrapHandle<AutoencoderKL>(env, info.Length() ? info[0] : env.Undefined(), "vae");
  Napi::Object o = optionsObject(info, 1, "vaeSetOptions");
  auto boolOpt = [&](const char* key) -> std::optional<bool> {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return std::nullopt;
    if (!v.IsBoolean()) throwInvalid(env, std::string("vaeSetOptions: ") + key + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
  };
  auto numOpt = [&](const char* key) -> std::optional<double> {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return std::nullopt;
    if (!v.IsNumber()) throwInvalid(env, std::string("vaeSetOptions: ") + key + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  const std::optional<bool> slicing = boolOpt("slicing");
  const std::optional<bool> tiling = boolOpt("tiling");
  const std::optional<double> tileSize = numOpt("tileSize");
  const std::optional<double> overlap = numOpt("tileOverlap");
  if (tileSize && (!(*tileSize > 0) || *tileSize != std::floor(*tileSize) || *tileSize > 1e6))
    throwInvalid(env, "vaeSetOptions: tileSize must be a positive integer, got " + std::to_string(*tileSize));
  guarded(env, [&] {
    if (tiling || tileSize || overlap)
      m->setTiling(tiling.value_or(m->tiling()),
                   tileSize ? static_cast<int64_t>(*tileSize) : m->tileSampleMinSize(),
                   overlap ? *overlap : m->tileOverlapFactor());
    if (slicing) m->setSlicing(*slicing);
  });
  return describe(env, *m);
}

Napi::Value DisposeVae(const Napi::CallbackInfo& info) {
  if (info.Length() > 0) disposeHandle<AutoencoderKL>(info[0]);
  return info.Env().Undefined();
}

}  // namespace

void InitVae(Napi::Env env, Napi::Object exports) {
  exports.Set("loadVae", Napi::Function::New(env, LoadVae));
  exports.Set("loadVaeSingleFile", Napi::Function::New(env, LoadVaeSingleFile));
  exports.Set("vaeInfo", Napi::Function::New(env, VaeInfo));
  exports.Set("vaeDecode", Napi::Function::New(env, VaeDecode));
  exports.Set("vaeEncode", Napi::Function::New(env, VaeEncode));
  exports.Set("vaeSetOptions", Napi::Function::New(env, VaeSetOptions));
  exports.Set("disposeVae", Napi::Function::New(env, DisposeVae));
}

}  // namespace sd::addon
