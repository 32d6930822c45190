// Bindings for native/core/io: safetensors header inspection, tensor reads and writes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include "addon/bindings.h"
#include "addon/util.h"
#include "io/safetensors.h"
#include "nn/attention.h"
#include "nn/weight_storage.h"
#include "runtime/cpu_caching_allocator.h"
#include "runtime/device_graph.h"
#include "runtime/kernel_quirks.h"
#include "runtime/threads.h"
#include "util/error.h"
#include "util/torch_compat.h"

namespace sd::addon {

namespace {

Napi::Value ReadSafetensorsHeader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throwInvalid(env, "readSafetensorsHeader(path): path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  return runAsync<io::SafetensorsHeader>(
      env, [path] { return io::SafetensorsFile::open(path)->header(); },
      [](Napi::Env env, io::SafetensorsHeader& h) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Object meta = Napi::Object::New(env);
        for (const auto& [k, v] : h.metadata) meta.Set(k, v);
        out.Set("metadata", meta);
        Napi::Array tensors = Napi::Array::New(env, h.tensors.size());
        const uint64_t dataStart = 8 + h.headerSize;
        for (size_t i = 0; i < h.tensors.size(); ++i) {
          const auto& t = h.tensors[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", t.name);
          o.Set("dtype", io::dtypeName(t.dtype));
          Napi::Array shape = Napi::Array::New(env, t.shape.size());
          for (size_t j = 0; j < t.shape.size(); ++j) shape.Set(static_cast<uint32_t>(j), Napi::Number::New(env, static_cast<double>(t.shape[j])));
          o.Set("shape", shape);
          Napi::Array offsets = Napi::Array::New(env, 2);
          offsets.Set(0u, Napi::Number::New(env, static_cast<double>(t.begin)));
          offsets.Set(1u, Napi::Number::New(env, static_cast<double>(t.end)));
          o.Set("dataOffsets", offsets);
          Napi::Array fileOffsets = Napi::Array::New(env, 2);
          fileOffsets.Set(0u, Napi::Number::New(env, static_cast<double>(dataStart + t.begin)));
          fileOffsets.Set(1u, Napi::Number::New(env, static_cast<double>(dataStart + t.end)));
          o.Set("fileOffsets", fileOffsets);
          tensors.Set(static_cast<uint32_t>(i), o);
        }
        out.Set("tensors", tensors);
        out.Set("headerSize", Napi::Number::New(env, static_cast<double>(h.headerSize)));
        return out;
      });
}

// readSafetensors(path, names?) → {name: {data, shape, dtype}} (F16/BF16 as float32; F8 as raw bytes).
Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throwInvalid(env, "readSafetensors(path): path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  using Result = std::vector<std::pair<std::string, at::Tensor>>;
  return runAsync<Result>(
      env,
      [path] {
        auto f = io::SafetensorsFile::open(path);
        Result r;
        for (const auto& t : f->header().tensors) r.emplace_back(t.name, f->tensor(t).clone());
        return r;
      },
      [](Napi::Env env, Result& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        for (auto& [name, t] : r) out.Set(name, fromTensor(env, t));
        return out;
      });
}

// writeSafetensors(path, {name: {data, shape}}, metadata?)
Napi::Value WriteSafetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throwInvalid(env, "writeSafetensors(path, tensors, metadata?)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Object obj = info[1].As<Napi::Object>();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  Napi::Array names = obj.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    tensors.emplace_back(name, toTensor(env, obj.Get(name), "tensors[\"" + name + "\"]"));
  }
  std::map<std::string, std::string> meta;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object m = info[2].As<Napi::Object>();
    Napi::Array keys = m.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
      meta[k] = m.Get(k).ToString().Utf8Value();
    }
  }
  return runAsync<bool>(
      env, [path, tensors, meta] { io::writeSafetensors(path, tensors, meta); return true; },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("libtorchVersion", TORCH_VERSION);
  o.Set("sdpa", nn::sdpaAvailable());
#ifdef SD_HAVE_FLOAT8
  o.Set("float8", true);  // fp8 storage in at::kFloat8_e4m3fn / at::kFloat8_e5m2
#else
  o.Set("float8", false);  // fp8 storage as raw uint8 codes, decoded by sd-native's table
#endif
  // Reduced-precision CPU kernels of this libtorch that sd-native routes around (runtime/kernel_quirks.h).
  Napi::Object quirks = Napi::Object::New(env);
  for (const auto& [name, dtype] : {std::pair<const char*, at::ScalarType>{"bfloat16", at::kBFloat16}, {"float16", at::kHalf}}) {
    const runtime::CpuKernelQuirks& q = runtime::cpuKernelQuirks(dtype);
    Napi::Array list = Napi::Array::New(env);
    if (q.conv2dNarrowOutput) list.Set(list.Length(), "conv2dNarrowOutput");
    if (q.groupNormChannelsLast) list.Set(list.Length(), "groupNormChannelsLast");
    quirks.Set(name, list);
  }
  o.Set("cpuKernelQuirks", quirks);
  o.Set("cuda", at::hasCUDA());
  // enableCudaGraphs needs a build against a CUDA libtorch (runtime/device_graph.h)
  o.Set("cudaGraphs", runtime::DeviceGraph::cudaGraphsBuilt());
  o.Set("threads", Napi::Number::New(env, at::get_num_threads()));
  // large CPU buffers reused within a call (runtime/cpu_caching_allocator.h)
  o.Set("cpuCachingAllocator", runtime::cpuCacheStats().installed);
  o.Set("blasThreads", Napi::Number::New(env, runtime::openBlasThreads()));
  return o;
}

void setNumber(Napi::Env env, Napi::Object& o, const char* key, int64_t v) {
  o.Set(key, Napi::Number::New(env, static_cast<double>(v)));
}

// cpuCacheExercise(sizes: number[], keep = 0, budget = -1) → {maxLiveCached, maxLive, baseLive, hits,
// misses, recycled, cachedAfter, cachedAtEnd}: inside one CpuCacheScope, allocates (at::empty, uint8,
// untouched) and frees one tensor per size, in order, keeping the last `keep` alive, with
// setCpuCacheBudget(budget); reports the largest live + cached and live bytes seen after each step
// and the counters' changes (tests of the cache's limit and recycling).
Napi::Value CpuCacheExercise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throwInvalid(env, "cpuCacheExercise(sizes: number[], keep?: number, budget?: number)");
  Napi::Array arr = info[0].As<Napi::Array>();
  const int64_t keep = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  const int64_t budget = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : -1;
  const runtime::CpuCacheStats s0 = runtime::cpuCacheStats();
  int64_t maxLiveCached = 0, maxLive = 0, cachedAfter = 0;
  {
    runtime::CpuCacheScope scope;
    runtime::setCpuCacheBudget(budget);
    std::vector<at::Tensor> held;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      const int64_t n = arr.Get(i).As<Napi::Number>().Int64Value();
      held.push_back(at::empty({n}, at::TensorOptions().dtype(at::kByte)));
      if (static_cast<int64_t>(held.size()) > keep) held.erase(held.begin());
      const runtime::CpuCacheStats s = runtime::cpuCacheStats();
      maxLiveCached = std::max(maxLiveCached, s.liveBytes + s.cachedBytes);
      maxLive = std::max(maxLive, s.liveBytes);
    }
    held.clear();
    cachedAfter = runtime::cpuCacheStats().cachedBytes;
  }
  const runtime::CpuCacheStats s1 = runtime::cpuCacheStats();
  Napi::Object o = Napi::Object::New(env);
  const auto num = [&](const char* key, int64_t v) { setNumber(env, o, key, v); };
  num("maxLiveCached", maxLiveCached);
  num("maxLive", maxLive);
  num("baseLive", s0.liveBytes);
  num("hits", s1.hits - s0.hits);
  num("misses", s1.misses - s0.misses);
  num("recycled", s1.recycled - s0.recycled);
  num("cachedAfter", cachedAfter);
  num("cachedAtEnd", s1.cachedBytes);
  return o;
}

// cpuCacheStats() → the caching CPU allocator's counters (tests, diagnostics).
Napi::Value CpuCacheStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const runtime::CpuCacheStats s = runtime::cpuCacheStats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("installed", s.installed);
  const auto num = [&](const char* key, int64_t v) { setNumber(env, o, key, v); };
  num("liveBytes", s.liveBytes);
  num("cachedBytes", s.cachedBytes);
  num("peakBytes", s.peakBytes);
  num("peakLiveBytes", s.peakLiveBytes);
  num("hits", s.hits);
  num("misses", s.misses);
  num("recycled", s.recycled);
  num("unmappedBytes", s.unmappedBytes);
  num("openScopes", s.openScopes);
  return o;
}

// fp8Quantize({data: Float32Array, shape}, format, impl = 'reference') → {data: Float32Array, shape}:
// the values rounded to the nearest OCP 8-bit float and decoded back.
//   'reference': the project's own encoder/decoder (io::encodeFp8 / io::decodeFp8);
//   'storage':   what fp8 weight storage keeps (nn::encodeFp8Storage / decodeFp8Storage: the native
//                float8 dtypes on libtorch >= 2.1);
//   'cast':      libtorch's bare float8 cast, no clamp (>= 2.1 only; E_UNSUPPORTED_MODEL before).
Napi::Value Fp8Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsString()) throwInvalid(env, "fp8Quantize(values, format, impl?)");
  at::Tensor values = toTensor(env, info[0], "values");
  const std::string format = info[1].As<Napi::String>().Utf8Value();
  const std::string impl = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "reference";
  return runAsync<at::Tensor>(
      env,
      [values, format, impl]() -> at::Tensor {
        if (impl == "reference") return io::decodeFp8(io::encodeFp8(values, format), format);
        if (impl == "storage") return nn::decodeFp8Storage(nn::encodeFp8Storage(values, format), at::kCPU, at::kFloat);
        if (impl == "cast") {
#ifdef SD_HAVE_FLOAT8
          return values.to(nn::fp8StorageDtype(format)).to(at::kFloat);
#else
          fail(codes::kUnsupportedModel, "libtorch " TORCH_VERSION " has no float8 dtypes (>= 2.1)");
#endif
        }
        fail(codes::kInvalidArgument, "impl must be 'reference', 'storage' or 'cast'; received '" + impl + "'");
      },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// fp8Decode({data: Uint8Array codes, shape}, format, impl) → {data: Float32Array, shape}: the codes'
// values by the project's table ('reference', io::decodeFp8) or as fp8 storage decodes them
// ('storage': libtorch's float8 → float32 cast on >= 2.1).
Napi::Value Fp8Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsString() || !info[2].IsString()) throwInvalid(env, "fp8Decode(codes, format, impl)");
  at::Tensor bytes = toTensor(env, info[0], "codes");
  if (bytes.scalar_type() != at::kByte) throwInvalid(env, "codes.data must be a Uint8Array");
  const std::string format = info[1].As<Napi::String>().Utf8Value();
  const std::string impl = info[2].As<Napi::String>().Utf8Value();
  return runAsync<at::Tensor>(
      env,
      [bytes, format, impl]() -> at::Tensor {
        if (impl == "reference") return io::decodeFp8(bytes, format);
        if (impl == "storage") return nn::decodeFp8Storage(bytes.view(nn::fp8StorageDtype(format)), at::kCPU, at::kFloat);
        fail(codes::kInvalidArgument, "impl must be 'reference' or 'storage'; received '" + impl + "'");
      },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  exports.Set("readSafetensorsHeader", Napi::Function::New(env, ReadSafetensorsHeader));
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensors));
  exports.Set("writeSafetensors", Napi::Function::New(env, WriteSafetensors));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("cpuCacheStats", Napi::Function::New(env, CpuCacheStats));
  exports.Set("cpuCacheExercise", Napi::Function::New(env, CpuCacheExercise));
  exports.Set("fp8Quantize", Napi::Function::New(env, Fp8Quantize));
  exports.Set("fp8Decode", Napi::Function::New(env, Fp8Decode));
}

}  // namespace sd::addon
