// Bindings for native/core/models/clip_text_model (transformers CLIPTextModel / CLIPTextModelWithProjection).
#include <ATen/ATen.h>

#include "addon/bindings.h"
#include "addon/util.h"
#include "models/clip_text_model.h"

namespace sd::addon {

namespace {

using models::CLIPTextModel;
using Model = std::shared_ptr<CLIPTextModel>;

at::ScalarType parseDtype(Napi::Env env, const std::string& s, const char* what) {
  if (s == "float32") return at::kFloat;
  if (s == "float16") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  throwInvalid(env, std::string(what) + ": expected 'float32', 'float16' or 'bfloat16' but received '" + s + "'");
}

at::Device parseDevice(Napi::Env env, const std::string& s, const char* what) {
  try {
    return at::Device(s);
  } catch (const c10::Error&) {
    throwInvalid(env, std::string(what) + ": expected 'cpu', 'cuda' or 'cuda:<index>' but received '" + s + "'");
  }
}

Napi::Object optionsArg(Napi::Env env, const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return Napi::Object::New(env);
  if (!info[i].IsObject()) throwInvalid(env, std::string(what) + " must be an object");
  return info[i].As<Napi::Object>();
}

// loadTextEncoder(dir, {dtype?, variant?, device?}) → Promise<handle>
Napi::Value LoadTextEncoder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString())
    throwInvalid(env, "loadTextEncoder(dir, options?): dir must be a string");
  const std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = optionsArg(env, info, 1, "loadTextEncoder options");
  const at::ScalarType dtype = parseDtype(env, getString(o, "dtype", "float32"), "loadTextEncoder options.dtype");
  const at::Device device = parseDevice(env, getString(o, "device", "cpu"), "loadTextEncoder options.device");
  const std::string variant = getString(o, "variant", "");
  return runAsync<Model>(
      env, [dir, dtype, device, variant] { return CLIPTextModel::fromPretrained(dir, device, dtype, variant); },
      [](Napi::Env env, Model& m) -> Napi::Value { return wrapHandle(env, m); });
}

// textEncoderForward(handle, inputIds, {outputHiddenStates?}) → Promise<{lastHiddenState, hiddenStates, pooled, textEmbeds?}>
Napi::Value TextEncoderForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) throwInvalid(env, "textEncoderForward(handle, inputIds, options?)");
  Model m = unwrapHandle<CLIPTextModel>(env, info[0], "text encoder");
  at::Tensor ids = toTensor(env, info[1], "inputIds");
  Napi::Object o = optionsArg(env, info, 2, "textEncoderForward options");
  const bool hidden = getBool(o, "outputHiddenStates", true);
  return runAsync<models::CLIPTextOutput>(
      env, [m, ids, hidden] { return m->forward(ids, hidden); },
      [](Napi::Env env, models::CLIPTextOutput& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("lastHiddenState", fromTensor(env, r.lastHiddenState));
        Napi::Array hs = Napi::Array::New(env, r.hiddenStates.size());
        for (size_t i = 0; i < r.hiddenStates.size(); ++i) hs.Set(static_cast<uint32_t>(i), fromTensor(env, r.hiddenStates[i]));
        out.Set("hiddenStates", hs);
        out.Set("pooled", fromTensor(env, r.pooled));
        if (r.textEmbeds.defined()) out.Set("textEmbeds", fromTensor(env, r.textEmbeds));
        return out;
      });
}

// textEncoderHiddenState(handle, inputIds, index, {finalLayerNorm?}) → Promise<TensorData>
Napi::Value TextEncoderHiddenState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[2].IsNumber())
    throwInvalid(env, "textEncoderHiddenState(handle, inputIds, index, options?): index must be an integer");
  Model m = unwrapHandle<CLIPTextModel>(env, info[0], "text encoder");
  at::Tensor ids = toTensor(env, info[1], "inputIds");
  const double idx = info[2].As<Napi::Number>().DoubleValue();
  if (idx != static_cast<double>(static_cast<int64_t>(idx)))
    throwInvalid(env, "textEncoderHiddenState: index must be an integer but received " + std::to_string(idx));
  Napi::Object o = optionsArg(env, info, 3, "textEncoderHiddenState options");
  const bool finalLn = getBool(o, "finalLayerNorm", false);
  return runAsync<at::Tensor>(
      env,
      [m, ids, idx, finalLn] {
        at::Tensor h = m->hiddenState(ids, static_cast<int64_t>(idx));
        return finalLn ? m->finalLayerNorm(h) : h;
      },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// textEncoderFinalLayerNorm(handle, x) → Promise<TensorData>
Napi::Value TextEncoderFinalLayerNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) throwInvalid(env, "textEncoderFinalLayerNorm(handle, x)");
  Model m = unwrapHandle<CLIPTextModel>(env, info[0], "text encoder");
  at::Tensor x = toTensor(env, info[1], "x");
  return runAsync<at::Tensor>(
      env, [m, x] { return m->finalLayerNorm(x); },
      [](Napi::Env env, at::Tensor& t) -> Napi::Value { return fromTensor(env, t); });
}

// textEncoderSetTokenEmbeddings(handle, firstId, rows) → Promise<void>
Napi::Value TextEncoderSetTokenEmbeddings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsNumber())
    throwInvalid(env, "textEncoderSetTokenEmbeddings(handle, firstId, rows): firstId must be an integer");
  Model m = unwrapHandle<CLIPTextModel>(env, info[0], "text encoder");
  const double first = info[1].As<Napi::Number>().DoubleValue();
  if (first != static_cast<double>(static_cast<int64_t>(first)))
    throwInvalid(env, "textEncoderSetTokenEmbeddings: firstId must be an integer but received " + std::to_string(first));
  at::Tensor rows = toTensor(env, info[2], "rows");
  return runAsync<bool>(
      env, [m, first, rows] { m->setTokenEmbeddings(static_cast<int64_t>(first), rows); return true; },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// textEncoderInfo(handle) → {hiddenSize, numHiddenLayers, numAttentionHeads, vocabSize, maxPositionEmbeddings,
//                            hiddenAct, projectionDim?, withProjection, eosTokenId, dtype, device}
Napi::Value TextEncoderInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throwInvalid(env, "textEncoderInfo(handle)");
  Model m = unwrapHandle<CLIPTextModel>(env, info[0], "text encoder");
  const auto& c = m->config();
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](const char* k, int64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
  num("hiddenSize", c.hiddenSize);
  num("numHiddenLayers", c.numHiddenLayers);
  num("numAttentionHeads", c.numAttentionHeads);
  num("vocabSize", m->vocabSize());
  num("maxPositionEmbeddings", c.maxPositionEmbeddings);
  num("eosTokenId", c.eosTokenId);
  o.Set("hiddenAct", c.hiddenAct);
  o.Set("withProjection", c.withProjection);
  if (c.withProjection) num("projectionDim", c.projectionDim);
  const at::ScalarType dt = m->dtype();
  o.Set("dtype", dt == at::kHalf ? "float16" : dt == at::kBFloat16 ? "bfloat16" : dt == at::kFloat ? "float32"
                                                                                                     : c10::toString(dt));
  o.Set("device", m->device().str());
  return o;
}

// disposeTextEncoder(handle): frees the weights once no call is using them.
Napi::Value DisposeTextEncoder(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1) disposeHandle<CLIPTextModel>(info[0]);
  return info.Env().Undefined();
}

}  // namespace

void InitTextEncoder(Napi::Env env, Napi::Object exports) {
  exports.Set("loadTextEncoder", Napi::Function::New(env, LoadTextEncoder));
  exports.Set("textEncoderForward", Napi::Function::New(env, TextEncoderForward));
  exports.Set("textEncoderHiddenState", Napi::Function::New(env, TextEncoderHiddenState));
  exports.Set("textEncoderFinalLayerNorm", Napi::Function::New(env, TextEncoderFinalLayerNorm));
  exports.Set("textEncoderSetTokenEmbeddings", Napi::Function::New(env, TextEncoderSetTokenEmbeddings));
  exports.Set("textEncoderInfo", Napi::Function::New(env, TextEncoderInfo));
  exports.Set("disposeTextEncoder", Napi::Function::New(env, DisposeTextEncoder));
}

}  // namespace sd::addon
