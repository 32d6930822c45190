// Binding helpers: JS <-> ATen tensors, coded errors, async promise work.
#include "addon/util.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <new>

namespace sd::addon {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, code));
  return e;
}

void throwInvalid(Napi::Env env, const std::string& message) {
  throw makeError(env, codes::kInvalidArgument, message);
}

void describeCurrentException(std::string& code, std::string& message) {
  try {
    throw;
  } catch (const SdException& e) {
    code = e.code();
    message = e.what();
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    const bool oom = msg.find("out of memory") != std::string::npos ||
                     msg.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos ||
                     msg.find("not enough memory") != std::string::npos;
    code = oom ? codes::kOutOfMemory : codes::kInternal;
    message = (oom ? "out of memory: " : "libtorch error: ") + msg;
  } catch (const std::bad_alloc&) {
    code = codes::kOutOfMemory;
    message = "out of memory (std::bad_alloc)";
  } catch (const std::exception& e) {
    code = codes::kInternal;
    message = e.what();
  } catch (...) {
    code = codes::kInternal;
    message = "unknown native error";
  }
}

at::Tensor toTensor(Napi::Env env, const Napi::Value& value, const std::string& what) {
  if (!value.IsObject()) throwInvalid(env, what + " must be an object {data, shape}");
  Napi::Object o = value.As<Napi::Object>();
  Napi::Value data = o.Get("data");
  Napi::Value shapeV = o.Get("shape");
  if (!data.IsTypedArray()) throwInvalid(env, what + ".data must be a typed array");
  if (!shapeV.IsArray()) throwInvalid(env, what + ".shape must be an array of integers");
  Napi::Array shapeA = shapeV.As<Napi::Array>();
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (uint32_t i = 0; i < shapeA.Length(); ++i) {
    Napi::Value d = shapeA.Get(i);
    if (!d.IsNumber()) throwInvalid(env, what + ".shape[" + std::to_string(i) + "] is not a number");
    double dv = d.As<Napi::Number>().DoubleValue();
    if (!(dv >= 0) || dv != static_cast<double>(static_cast<int64_t>(dv)) || dv > 1e12)
      throwInvalid(env, what + ".shape[" + std::to_string(i) + "] must be a non-negative integer");
    shape.push_back(static_cast<int64_t>(dv));
    numel *= shape.back();
  }
  Napi::TypedArray ta = data.As<Napi::TypedArray>();
  at::ScalarType st;
  switch (ta.TypedArrayType()) {
    case napi_float32_array: st = at::kFloat; break;
    case napi_float64_array: st = at::kDouble; break;
    case napi_bigint64_array: st = at::kLong; break;
    case napi_int32_array: st = at::kInt; break;
    case napi_uint8_array: st = at::kByte; break;
    default: throwInvalid(env, what + ".data must be a Float32Array, Float64Array, BigInt64Array, Int32Array or Uint8Array");
  }
  if (static_cast<int64_t>(ta.ElementLength()) != numel)
    throwInvalid(env, what + ".data has " + std::to_string(ta.ElementLength()) + " elements but shape needs " +
                          std::to_string(numel));
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  if (numel > 0) std::memcpy(t.data_ptr(), src, ta.ByteLength());
  return t;
}

Napi::Object fromTensor(Napi::Env env, const at::Tensor& tIn) {
  at::Tensor t = tIn.detach().to(at::kCPU);
  if (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
  t = t.contiguous();
  Napi::Object o = Napi::Object::New(env);
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  const size_t n = static_cast<size_t>(t.numel());
  const size_t bytes = n * t.element_size();
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, bytes);
  if (bytes) std::memcpy(buf.Data(), t.data_ptr(), bytes);
  Napi::Value data;
  std::string dtype;
  switch (t.scalar_type()) {
    case at::kFloat: data = Napi::Float32Array::New(env, n, buf, 0); dtype = "float32"; break;
    case at::kDouble: data = Napi::Float64Array::New(env, n, buf, 0); dtype = "float64"; break;
    case at::kLong: data = Napi::BigInt64Array::New(env, n, buf, 0); dtype = "int64"; break;
    case at::kInt: data = Napi::Int32Array::New(env, n, buf, 0); dtype = "int32"; break;
    case at::kByte: data = Napi::Uint8Array::New(env, n, buf, 0); dtype = "uint8"; break;
    case at::kBool: data = Napi::Uint8Array::New(env, n, buf, 0); dtype = "bool"; break;
    default: throw makeError(env, codes::kInternal, "cannot return a tensor of dtype " + std::string(c10::toString(t.scalar_type())));
  }
  o.Set("data", data);
  o.Set("shape", shape);
  o.Set("dtype", Napi::String::New(env, dtype));
  return o;
}

std::string getString(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
}
double getNumber(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}
bool getBool(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : fallback;
}

namespace {
[[noreturn]] void missing(Napi::Env env, const char* what, const char* key, const char* type) {
  throwInvalid(env, std::string(what) + "." + key + " must be " + type + " (the request lib/ sends is complete)");
}
}  // namespace

double requireNumber(Napi::Env env, const Napi::Object& o, const char* key, const char* what) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) missing(env, what, key, "a number");
  return v.As<Napi::Number>().DoubleValue();
}
std::string requireString(Napi::Env env, const Napi::Object& o, const char* key, const char* what) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) missing(env, what, key, "a string");
  return v.As<Napi::String>().Utf8Value();
}
bool requireBool(Napi::Env env, const Napi::Object& o, const char* key, const char* what) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) missing(env, what, key, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

nn::AttentionOptions::Backend parseSdpa(Napi::Env env, const Napi::Value& v) {
  using Backend = nn::AttentionOptions::Backend;
  if (v.IsUndefined() || (v.IsString() && v.As<Napi::String>().Utf8Value() == "auto")) return Backend::kAuto;
  if (v.IsString() && v.As<Napi::String>().Utf8Value() == "flash") return Backend::kFlash;
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? Backend::kSdpa : Backend::kMath;
  throwInvalid(env, "sdpa must be true, false, 'auto' or 'flash'");
}

}  // namespace sd::addon
