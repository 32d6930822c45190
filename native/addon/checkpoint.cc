// Bindings for native/core/io/checkpoint: model_index.json, component / single-file state dicts,
// the single-file ↔ folder comparison, and in-memory safetensors validation (fuzz tests).
#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>

#include "addon/bindings.h"
#include "addon/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "loaders/single_file.h"
#include "nn/weights.h"

namespace sd::addon {

namespace {

/// torch-style dtype names: float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool.
std::string dtypeString(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

Napi::Array shapeArray(Napi::Env env, at::IntArrayRef shape) {
  Napi::Array a = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(shape[i])));
  return a;
}

Napi::Array stringArray(Napi::Env env, const std::vector<std::string>& items) {
  Napi::Array a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) a.Set(static_cast<uint32_t>(i), items[i]);
  return a;
}

std::string requireString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throwInvalid(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// readModelIndex(dir) → {dir, className, diffusersVersion, components, forceZerosForEmptyPrompt?}
Napi::Value ReadModelIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string dir = requireString(info, 0, "readModelIndex(dir): dir");
  return runAsync<io::ModelIndex>(
      env, [dir] { return io::readModelIndex(dir); },
      [](Napi::Env env, io::ModelIndex& mi) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("dir", mi.dir);
        o.Set("className", mi.className);
        o.Set("diffusersVersion", mi.diffusersVersion);
        Napi::Object comps = Napi::Object::New(env);
        for (const auto& [name, c] : mi.components) {
          if (!c.present) {
            comps.Set(name, env.Null());
            continue;
          }
          Napi::Array pair = Napi::Array::New(env, 2);
          pair.Set(0u, c.library);
          pair.Set(1u, c.className);
          comps.Set(name, pair);
        }
        o.Set("components", comps);
        if (mi.forceZerosForEmptyPrompt) o.Set("forceZerosForEmptyPrompt", *mi.forceZerosForEmptyPrompt);
        return o;
      });
}

struct StateDictSummary {
  std::vector<std::tuple<std::string, std::vector<int64_t>, std::string>> entries;  // name, shape, dtype
};

// loadStateDict(path, {component?, variant?, baseName?, singleFile?, configDir?}) → {name: {shape, dtype}}
Napi::Value LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = requireString(info, 0, "loadStateDict(path, options): path");
  Napi::Object opts = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  const std::string component = getString(opts, "component", "");
  const std::string variant = getString(opts, "variant", "");
  const std::string baseName = getString(opts, "baseName", "");
  const bool singleFile = getBool(opts, "singleFile", false);
  const std::string configDir = getString(opts, "configDir", "");
  if (singleFile && configDir.empty())
    throwInvalid(env, "loadStateDict: options.configDir (a diffusers folder with the configs) is required with singleFile");
  if (singleFile && component.empty())
    throwInvalid(env, "loadStateDict: options.component (\"unet\", \"vae\", \"text_encoder\" or \"text_encoder_2\") is required with singleFile");
  return runAsync<StateDictSummary>(
      env,
      [=] {
        nn::StateDict sd;
        if (singleFile) {
          loaders::SingleFileCheckpoint ck = loaders::loadSingleFile(path, configDir);
          sd = ck.component(component);
        } else {
          const std::string dir = component.empty() ? path : (std::filesystem::path(path) / component).string();
          sd = io::loadComponentWeights(dir, baseName.empty() ? io::weightsBaseName(dir) : baseName, variant);
        }
        StateDictSummary s;
        for (const auto& [name, t] : sd)
          s.entries.emplace_back(name, t.sizes().vec(), dtypeString(t.scalar_type()));
        return s;
      },
      [](Napi::Env env, StateDictSummary& s) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        for (const auto& [name, shape, dtype] : s.entries) {
          Napi::Object e = Napi::Object::New(env);
          e.Set("shape", shapeArray(env, shape));
          e.Set("dtype", dtype);
          o.Set(name, e);
        }
        return o;
      });
}

struct Comparison {
  std::vector<std::string> missing, unexpected, mismatched;
  double maxAbsDiff = 0;
  int64_t count = 0;
};

/// Compares `got` (mapped single file) with `ref` (folder) by name, shape, dtype and value.
Comparison compare(const nn::StateDict& got, const nn::StateDict& ref) {
  Comparison c;
  for (const auto& [name, r] : ref) {
    auto it = got.find(name);
    if (it == got.end()) {
      c.missing.push_back(name);
      continue;
    }
    const at::Tensor& g = it->second;
    if (g.sizes() != r.sizes() || g.scalar_type() != r.scalar_type()) {
      c.mismatched.push_back(name + ": " + nn::shapeString(g.sizes()) + " " + dtypeString(g.scalar_type()) + " vs " +
                             nn::shapeString(r.sizes()) + " " + dtypeString(r.scalar_type()));
      continue;
    }
    ++c.count;
    if (r.numel() == 0) continue;
    const double d = (g.to(at::kDouble) - r.to(at::kDouble)).abs().max().item<double>();
    if (!(d <= c.maxAbsDiff)) c.maxAbsDiff = std::isnan(d) ? INFINITY : d;
  }
  for (const auto& [name, g] : got)
    if (!ref.count(name)) c.unexpected.push_back(name);
  return c;
}

// compareCheckpoints(singleFilePath, configDir, folderDir) → {unet|vae|text_encoder|text_encoder_2?: Comparison}
Napi::Value CompareCheckpoints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string single = requireString(info, 0, "compareCheckpoints(singleFile, configDir, folder): singleFile");
  const std::string configDir = requireString(info, 1, "compareCheckpoints(singleFile, configDir, folder): configDir");
  const std::string folder = requireString(info, 2, "compareCheckpoints(singleFile, configDir, folder): folder");
  using Result = std::vector<std::pair<std::string, Comparison>>;
  return runAsync<Result>(
      env,
      [=] {
        loaders::SingleFileCheckpoint ck = loaders::loadSingleFile(single, configDir);
        Result r;
        for (const char* name : {"unet", "vae", "text_encoder", "text_encoder_2"}) {
          const std::string dir = (std::filesystem::path(folder) / name).string();
          // text_encoder_2 only for SDXL; text_encoder absent for an SDXL refiner.
          if (ck.component(name).empty() && !std::filesystem::exists(dir)) continue;
          if (std::string(name) == "text_encoder_2" && ck.family != loaders::CheckpointFamily::SDXL) continue;
          nn::StateDict ref = io::loadComponentWeights(dir, io::weightsBaseName(dir), "");
          r.emplace_back(name, compare(ck.component(name), ref));
        }
        return r;
      },
      [](Napi::Env env, Result& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        for (const auto& [name, c] : r) {
          Napi::Object e = Napi::Object::New(env);
          e.Set("missing", stringArray(env, c.missing));
          e.Set("unexpected", stringArray(env, c.unexpected));
          e.Set("mismatched", stringArray(env, c.mismatched));
          e.Set("maxAbsDiff", Napi::Number::New(env, c.maxAbsDiff));
          e.Set("count", Napi::Number::New(env, static_cast<double>(c.count)));
          o.Set(name, e);
        }
        return o;
      });
}

// saveSingleFile(modelDir, outFile, {variant?}) → {path, family, refiner, tensors}: the diffusers
// folder written as an original-layout single-file checkpoint (loaders::saveSingleFile).
Napi::Value SaveSingleFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string modelDir = requireString(info, 0, "saveSingleFile(modelDir, outFile): modelDir");
  const std::string outFile = requireString(info, 1, "saveSingleFile(modelDir, outFile): outFile");
  Napi::Object opts = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  const std::string variant = getString(opts, "variant", "");
  return runAsync<loaders::SingleFileSummary>(
      env, [=] { return loaders::saveSingleFile(modelDir, outFile, variant); },
      [](Napi::Env env, loaders::SingleFileSummary& s) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("path", s.path);
        o.Set("family", s.family == loaders::CheckpointFamily::SD1   ? "sd1"
                        : s.family == loaders::CheckpointFamily::SD2 ? "sd2"
                                                                : "sdxl");
        o.Set("refiner", s.refiner);
        o.Set("tensors", Napi::Number::New(env, static_cast<double>(s.tensors)));
        return o;
      });
}

// validateSafetensorsBuffer(buf: Uint8Array) → {ok: true, tensors, bytes, byteSum} (synchronous).
// Runs the reader's full validation on memory, then reads every tensor through SafetensorsFile::tensor
// and sums its bytes; throws a coded error (E_BAD_CHECKPOINT) for an invalid image.
Napi::Value ValidateSafetensorsBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throwInvalid(env, "validateSafetensorsBuffer(buf): buf must be a Uint8Array");
  Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
  uint64_t tensors = 0, bytes = 0, sum = 0;
  guarded(env, [&] {
    // Synchronous: the buffer cannot change or be collected while we read it; views die here.
    auto file = io::SafetensorsFile::fromMemory(nullptr, buf.Data(), buf.ByteLength(), "<buffer>");
    for (const auto& ti : file->header().tensors) {
      at::Tensor t = file->tensor(ti);
      const uint64_t n = static_cast<uint64_t>(t.numel()) * t.element_size();
      if (n != ti.end - ti.begin || !t.is_contiguous())
        fail(codes::kInternal, "tensor \"" + ti.name + "\" read back with " + std::to_string(n) + " bytes, expected " +
                                   std::to_string(ti.end - ti.begin));
      const uint8_t* p = n ? static_cast<const uint8_t*>(t.data_ptr()) : nullptr;
      for (uint64_t i = 0; i < n; ++i) sum += p[i];
      bytes += n;
      ++tensors;
    }
  });
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", true);
  o.Set("tensors", Napi::Number::New(env, static_cast<double>(tensors)));
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
  o.Set("byteSum", Napi::Number::New(env, static_cast<double>(sum)));
  return o;
}

}  // namespace

void InitCheckpoint(Napi::Env env, Napi::Object exports) {
  exports.Set("readModelIndex", Napi::Function::New(env, ReadModelIndex));
  exports.Set("loadStateDict", Napi::Function::New(env, LoadStateDict));
  exports.Set("compareCheckpoints", Napi::Function::New(env, CompareCheckpoints));
  exports.Set("validateSafetensorsBuffer", Napi::Function::New(env, ValidateSafetensorsBuffer));
  exports.Set("saveSingleFile", Napi::Function::New(env, SaveSingleFile));
}

}  // namespace sd::addon
