// Binding helpers shared by every addon file: tensor conversion between JS and ATen, error
// mapping (SdException → JS Error with `.code`), promise-returning async work, and handles.
// No model logic lives here.
#pragma once

#include <ATen/ATen.h>
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <typeinfo>

#include "nn/attention.h"
#include "runtime/memory.h"
#include "util/error.h"

namespace sd::addon {

/// A JS Error carrying `.code` (an E_* code); lib/errors.ts turns it into an SdError subclass.
Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);
/// Throws an E_INVALID_ARGUMENT error into JS (as a C++ exception; NAPI_CPP_EXCEPTIONS).
[[noreturn]] void throwInvalid(Napi::Env env, const std::string& message);

/// {data: TypedArray, shape: number[]} → CPU tensor (copied). Float32Array → float32,
/// Float64Array → float64, BigInt64Array → int64, Int32Array → int32, Uint8Array → uint8.
/// `what` names the argument in error messages.
at::Tensor toTensor(Napi::Env env, const Napi::Value& value, const std::string& what);
/// Tensor → {data, shape, dtype}; float16/bfloat16 come back as Float32Array.
Napi::Object fromTensor(Napi::Env env, const at::Tensor& t);

/// Reads an optional property of an options object.
std::string getString(const Napi::Object& o, const char* key, const std::string& fallback);
double getNumber(const Napi::Object& o, const char* key, double fallback);
bool getBool(const Napi::Object& o, const char* key, bool fallback);
/// Required fields of a request object (lib/ fills every default): E_INVALID_ARGUMENT naming
/// `what.key` when the field is missing or of another type.
double requireNumber(Napi::Env env, const Napi::Object& o, const char* key, const char* what);
std::string requireString(Napi::Env env, const Napi::Object& o, const char* key, const char* what);
bool requireBool(Napi::Env env, const Napi::Object& o, const char* key, const char* what);

/// The `sdpa` attention setting: true → kSdpa, false → kMath, 'auto' / undefined → kAuto.
/// @throws E_INVALID_ARGUMENT for anything else.
nn::AttentionOptions::Backend parseSdpa(Napi::Env env, const Napi::Value& v);

/// Runs `work` on the libuv thread pool and resolves with `done(env, result)` on the JS thread.
/// Any SdException / c10::Error / std::exception rejects the promise with a coded Error
/// (c10 out-of-memory → E_OUT_OF_MEMORY, others → E_INTERNAL).
template <typename R>
Napi::Promise runAsync(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> done);

/// Converts the in-flight C++ exception into {code, message}.
void describeCurrentException(std::string& code, std::string& message);

/// Runs `f` on the JS thread (a synchronous binding), turning any non-JS exception (SdException,
/// c10::Error, std::exception) into a coded JS error as runAsync does. Returns what `f` returns.
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    std::string code, message;
    describeCurrentException(code, message);
    throw makeError(env, code, message);
  }
}

/// A native object owned by JS through a Napi::External; dispose() drops it early. Work in
/// flight keeps its own shared_ptr, so disposal never frees memory a worker is using.
/// Handles carry their C++ type: unwrapping one as another type is a typed JS error, never a
/// reinterpretation of memory.
struct HandleBase {
  virtual ~HandleBase() = default;
  virtual const std::type_info& type() const = 0;
};

template <typename T>
struct Handle : HandleBase {
  explicit Handle(std::shared_ptr<T> p) : ptr(std::move(p)) {}
  const std::type_info& type() const override { return typeid(T); }
  std::shared_ptr<T> ptr;
};

template <typename T>
Napi::Value wrapHandle(Napi::Env env, std::shared_ptr<T> ptr) {
  HandleBase* h = new Handle<T>(std::move(ptr));
  return Napi::External<HandleBase>::New(env, h, [](Napi::Env, HandleBase* b) { delete b; });
}

/// The Handle<T> behind `v`, or nullptr when `v` is not a handle of type T.
template <typename T>
Handle<T>* handleOf(const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  HandleBase* b = v.As<Napi::External<HandleBase>>().Data();
  if (!b || b->type() != typeid(T)) return nullptr;
  return static_cast<Handle<T>*>(b);
}

/// The object behind a handle; E_DISPOSED once dispose() ran, E_INVALID_ARGUMENT if not a
/// handle of this kind (e.g. an SDXL pipeline passed where an SD pipeline is expected).
template <typename T>
std::shared_ptr<T> unwrapHandle(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throwInvalid(env, std::string(what) + " is not a native handle");
  Handle<T>* h = handleOf<T>(v);
  if (!h) throwInvalid(env, std::string(what) + " is a native handle of another kind");
  if (!h->ptr) throw makeError(env, codes::kDisposed, std::string(what) + " has been disposed");
  return h->ptr;
}

/// Drops the handle's reference; when it was the last (no call in flight), the object is freed
/// here and the allocator is asked to give the memory back to the OS (runtime/memory.h).
template <typename T>
void disposeHandle(const Napi::Value& v) {
  if (Handle<T>* h = handleOf<T>(v)) {
    if (!h->ptr) return;
    h->ptr.reset();
    runtime::releaseFreedMemory();
  }
}

// ---- implementation of runAsync --------------------------------------------------------------

template <typename R>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> done)
      : Napi::AsyncWorker(env, "sd-native"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = std::make_unique<R>(work_());
    } catch (...) {
      describeCurrentException(code_, message_);
      failed_ = true;
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failed_) {
      deferred_.Reject(makeError(env, code_, message_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      std::string code, message;
      describeCurrentException(code, message);
      deferred_.Reject(makeError(env, code, message).Value());
    }
    result_.reset();
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<R()> work_;
  std::function<Napi::Value(Napi::Env, R&)> done_;
  std::unique_ptr<R> result_;
  bool failed_ = false;
  std::string code_, message_;
};

template <typename R>
Napi::Promise runAsync(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> done) {
  auto* w = new PromiseWorker<R>(env, std::move(work), std::move(done));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace sd::addon
