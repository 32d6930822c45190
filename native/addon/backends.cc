// torch.backends flags (torch/backends/cudnn/__init__.py `benchmark`, `allow_tf32`;
// torch/backends/cuda/__init__.py `matmul.allow_tf32`), backed by at::globalContext().
#include <ATen/Context.h>

#include "addon/bindings.h"
#include "addon/util.h"

namespace sd::addon {

namespace {

bool boolArg(const Napi::CallbackInfo& info, const char* what) {
  if (info.Length() < 1 || !info[0].IsBoolean()) throwInvalid(info.Env(), std::string(what) + " must be a boolean");
  return info[0].As<Napi::Boolean>().Value();
}

Napi::Value GetCudnnBenchmark(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::globalContext().benchmarkCuDNN());
}
Napi::Value SetCudnnBenchmark(const Napi::CallbackInfo& info) {
  at::globalContext().setBenchmarkCuDNN(boolArg(info, "backends.cudnn.benchmark"));
  return info.Env().Undefined();
}
Napi::Value GetCudaMatmulAllowTf32(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::globalContext().allowTF32CuBLAS());
}
Napi::Value SetCudaMatmulAllowTf32(const Napi::CallbackInfo& info) {
  at::globalContext().setAllowTF32CuBLAS(boolArg(info, "backends.cuda.matmul.allowTf32"));
  return info.Env().Undefined();
}
Napi::Value GetCudnnAllowTf32(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::globalContext().allowTF32CuDNN());
}
Napi::Value SetCudnnAllowTf32(const Napi::CallbackInfo& info) {
  at::globalContext().setAllowTF32CuDNN(boolArg(info, "backends.cudnn.allowTf32"));
  return info.Env().Undefined();
}

}  // namespace

void InitBackends(Napi::Env env, Napi::Object exports) {
  exports.Set("getCudnnBenchmark", Napi::Function::New(env, GetCudnnBenchmark));
  exports.Set("setCudnnBenchmark", Napi::Function::New(env, SetCudnnBenchmark));
  exports.Set("getCudaMatmulAllowTf32", Napi::Function::New(env, GetCudaMatmulAllowTf32));
  exports.Set("setCudaMatmulAllowTf32", Napi::Function::New(env, SetCudaMatmulAllowTf32));
  exports.Set("getCudnnAllowTf32", Napi::Function::New(env, GetCudnnAllowTf32));
  exports.Set("setCudnnAllowTf32", Napi::Function::New(env, SetCudnnAllowTf32));
}

}  // namespace sd::addon
