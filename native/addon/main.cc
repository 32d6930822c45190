// The addon's entry point: registers every binding file's exports.
#include <napi.h>

#include "addon/bindings.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  sd::addon::InitIo(env, exports);
  sd::addon::InitTextEncoder(env, exports);
  sd::addon::InitVae(env, exports);
  sd::addon::InitUNet(env, exports);
  sd::addon::InitSchedulers(env, exports);
  sd::addon::InitCheckpoint(env, exports);
  sd::addon::InitPipeline(env, exports);
  sd::addon::InitModels(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(sd_native, Init)
