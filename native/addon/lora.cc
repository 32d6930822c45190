// Bindings for the LoRA / textual-inversion methods of pipelines::PipelineBase (SD and SDXL pipelines)
// (diffusers' load_lora_weights, set_adapters, fuse_lora, unfuse_lora, unload_lora_weights,
// load_textual_inversion's embedding rows). Every call runs on the thread pool: it waits for a
// running generation of the same pipeline.
#include "addon/bindings.h"
#include "addon/pipeline_common.h"
#include "addon/util.h"
#include "pipelines/stable_diffusion.h"

namespace sd::addon {

namespace {

using Pipe = std::shared_ptr<pipelines::PipelineBase>;

std::string argString(Napi::Env env, const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throwInvalid(env, std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

double argNumber(Napi::Env env, const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) throwInvalid(env, std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

// loadLora(pipeline, path, { adapterName?, weight }) → Promise<{ adapter, unetModules, textEncoderModules, textEncoder2Modules }>
Napi::Value LoadLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  const std::string path = argString(env, info, 1, "path");
  if (info.Length() < 3 || !info[2].IsObject()) throwInvalid(env, "loadLora(pipeline, path, options)");
  Napi::Object o = info[2].As<Napi::Object>();
  const std::string adapter = getString(o, "adapterName", "");  // optional: "" = default_<n>
  const double weight = requireNumber(env, o, "weight", "loadLora options");
  using R = pipelines::LoraLoadInfo;
  return runAsync<R>(
      env, [p, path, adapter, weight] { return p->loadLora(path, adapter, weight); },
      [](Napi::Env env, R& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("adapter", r.adapter);
        o.Set("unetModules", Napi::Number::New(env, static_cast<double>(r.unetModules)));
        o.Set("textEncoderModules", Napi::Number::New(env, static_cast<double>(r.textEncoderModules)));
        o.Set("textEncoder2Modules", Napi::Number::New(env, static_cast<double>(r.textEncoder2Modules)));
        return o;
      });
}

// setLoraAdapters(pipeline, names: string[], weights: number[]) → Promise<void>
Napi::Value SetLoraAdapters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsArray())
    throwInvalid(env, "setLoraAdapters(pipeline, names, weights): names and weights must be arrays");
  Napi::Array n = info[1].As<Napi::Array>(), w = info[2].As<Napi::Array>();
  std::vector<std::string> names;
  std::vector<double> weights;
  for (uint32_t i = 0; i < n.Length(); ++i) {
    if (!n.Get(i).IsString()) throwInvalid(env, "adapter names must be strings");
    names.push_back(n.Get(i).As<Napi::String>().Utf8Value());
  }
  for (uint32_t i = 0; i < w.Length(); ++i) {
    if (!w.Get(i).IsNumber()) throwInvalid(env, "adapter weights must be numbers");
    weights.push_back(w.Get(i).As<Napi::Number>().DoubleValue());
  }
  return runAsync<bool>(
      env, [p, names, weights] { p->setLoraAdapters(names, weights); return true; },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// fuseLora(pipeline, scale) → Promise<number of layers fused>
Napi::Value FuseLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  const double scale = argNumber(env, info, 1, "loraScale");
  return runAsync<int64_t>(
      env, [p, scale] { return p->fuseLora(scale); },
      [](Napi::Env env, int64_t& n) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(n)); });
}

// unfuseLora(pipeline) → Promise<number of layers restored>
Napi::Value UnfuseLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  return runAsync<int64_t>(
      env, [p] { return p->unfuseLora(); },
      [](Napi::Env env, int64_t& n) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(n)); });
}

// unloadLora(pipeline, adapterName?: string) → Promise<void>; all adapters when omitted
Napi::Value UnloadLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  const std::string name = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  return runAsync<bool>(
      env, [p, name] { p->unloadLora(name); return true; },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// loraAdapters(pipeline) → Promise<string[]>
Napi::Value LoraAdapters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  return runAsync<std::vector<std::string>>(
      env, [p] { return p->loraAdapters(); },
      [](Napi::Env env, std::vector<std::string>& v) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, v.size());
        for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
        return a;
      });
}

// pipelineWeight(pipeline, component, name) → Promise<{ data: Float32Array, shape }>
Napi::Value PipelineWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  const std::string component = argString(env, info, 1, "component");
  const std::string name = argString(env, info, 2, "name");
  return runAsync<at::Tensor>(
      env, [p, component, name] { return p->componentWeight(component, name); },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// setTokenEmbeddings(pipeline, firstId, rows { data: Float32Array, shape: [n, D] }, component) →
// Promise<vocab size>; component "text_encoder" | "text_encoder_2"
Napi::Value SetTokenEmbeddings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pipe p = unwrapAnyPipeline(env, info[0], "pipeline");
  const double first = argNumber(env, info, 1, "firstId");
  if (info.Length() < 3) throwInvalid(env, "setTokenEmbeddings(pipeline, firstId, rows, component): rows missing");
  at::Tensor rows = toTensor(env, info[2], "rows");
  const std::string component = argString(env, info, 3, "component");
  const int64_t firstId = static_cast<int64_t>(first);
  return runAsync<int64_t>(
      env, [p, firstId, rows, component] { p->setTokenEmbeddings(component, firstId, rows); return p->vocabSize(component); },
      [](Napi::Env env, int64_t& n) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(n)); });
}

}  // namespace

void InitLora(Napi::Env env, Napi::Object exports) {
  exports.Set("loadLora", Napi::Function::New(env, LoadLora));
  exports.Set("setLoraAdapters", Napi::Function::New(env, SetLoraAdapters));
  exports.Set("fuseLora", Napi::Function::New(env, FuseLora));
  exports.Set("unfuseLora", Napi::Function::New(env, UnfuseLora));
  exports.Set("unloadLora", Napi::Function::New(env, UnloadLora));
  exports.Set("loraAdapters", Napi::Function::New(env, LoraAdapters));
  exports.Set("pipelineWeight", Napi::Function::New(env, PipelineWeight));
  exports.Set("setTokenEmbeddings", Napi::Function::New(env, SetTokenEmbeddings));
}

}  // namespace sd::addon
