// Each binding file registers its exports here; main.cc calls them in order.
#pragma once

#include <napi.h>

namespace sd::addon {
void InitIo(Napi::Env env, Napi::Object exports);        // io.cc: safetensors header/read/write
void InitTextEncoder(Napi::Env env, Napi::Object exports);  // text_encoder.cc: CLIPTextModel
void InitVae(Napi::Env env, Napi::Object exports);       // vae.cc: AutoencoderKL load/encode/decode
void InitUNet(Napi::Env env, Napi::Object exports);      // unet.cc: UNet2DConditionModel
void InitSchedulers(Napi::Env env, Napi::Object exports);  // schedulers.cc: schedulers, CPU generators
void InitCheckpoint(Napi::Env env, Napi::Object exports);  // checkpoint.cc: model_index, state dicts, single files
void InitPipeline(Napi::Env env, Napi::Object exports);    // pipeline.cc: StableDiffusion pipelines
void InitModels(Napi::Env env, Napi::Object exports);      // models.cc: random weights (create-model)
void InitBackends(Napi::Env env, Napi::Object exports);    // backends.cc: torch.backends flags
void InitLora(Napi::Env env, Napi::Object exports);        // lora.cc: LoRA adapters, textual inversion
void InitControlNet(Napi::Env env, Napi::Object exports);  // controlnet.cc: ControlNetModel
void InitAutoencoderTiny(Napi::Env env, Napi::Object exports);  // autoencoder_tiny.cc: AutoencoderTiny (TAESD)
void InitPipelineVae(Napi::Env env, Napi::Object exports);  // pipeline_vae.cc: pipe.vae swapping, preview decoder
void InitCanny(Napi::Env env, Napi::Object exports);  // canny.cc: the canny control-image preprocessor
}  // namespace sd::addon
