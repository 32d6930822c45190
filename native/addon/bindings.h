// Each binding file registers its exports here; main.cc calls them in order.
#pragma once

#include <napi.h>

namespace sd::addon {
void InitIo(Napi::Env env, Napi::Object exports);        // io.cc: safetensors header/read/write
void InitCheckpoint(Napi::Env env, Napi::Object exports);  // checkpoint.cc: model_index, state dicts, single files
}  // namespace sd::addon
