// Original single-file checkpoints (the CompVis/Stability "LDM" layout that AUTOMATIC1111,
// ComfyUI and civitai use) ↔ diffusers parameter names, both ways, after diffusers v0.30.3
// loaders/single_file_utils.py (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
// convert_ldm_clip_checkpoint, convert_open_clip_checkpoint) and, for the inverse,
// scripts/convert_diffusers_to_original_{stable_diffusion,sdxl}.py.
//
// Sits above models/ (the UNet config decides transformer_layers_per_block), so io/ never
// includes models/. Files: single_file.cc (family, loading), single_file_keys.cc (the block-prefix
// rule tables, built from the diffusers configs), single_file_save.cc (the inverse and the writer).
// Only safetensors files are read; pickles are refused with E_BAD_CHECKPOINT.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "io/state_dict.h"

namespace sd::loaders {

/// Families of original checkpoints, detected from the text-encoder keys.
enum class CheckpointFamily {
  SD1,   // cond_stage_model.transformer.text_model.* (OpenAI CLIP ViT-L/14)
  SD2,   // cond_stage_model.model.* (OpenCLIP ViT-H/14, fused in_proj)
  SDXL,  // conditioner.embedders.0.transformer.* (CLIP ViT-L) + conditioner.embedders.1.model.* (OpenCLIP
         // bigG, fused in_proj, text_projection [D, P]); refiner: conditioner.embedders.0.model.* (bigG alone)
};
const char* familyName(CheckpointFamily f);

/// A single-file checkpoint mapped to diffusers names, per component.
struct SingleFileCheckpoint {
  std::string path;
  CheckpointFamily family = CheckpointFamily::SD1;
  io::StateDict unet;          // UNet2DConditionModel names (down_blocks.0.resnets.0.conv1.weight, ...)
  io::StateDict vae;           // AutoencoderKL names (encoder.down_blocks.0.resnets.0.norm1.weight, ...)
  io::StateDict textEncoder;   // CLIPTextModel names (text_model.encoder.layers.0.self_attn.q_proj.weight, ...);
                               // empty for an SDXL refiner
  io::StateDict textEncoder2;  // SDXL only: CLIPTextModelWithProjection names (..., text_projection.weight [P, D])
  std::vector<std::string> ignored;  // known-unused keys that were skipped (EMA copies, schedule buffers, ...)
  std::map<std::string, std::string> metadata;  // the file's __metadata__
  /// The StateDict of "unet" | "vae" | "text_encoder" | "text_encoder_2"; E_INVALID_ARGUMENT for another name.
  const io::StateDict& component(const std::string& name) const;
  io::StateDict& component(const std::string& name);
};

/// Detects the family of an original checkpoint from its keys. E_UNSUPPORTED_MODEL when it is not
/// an SD 1.x / 2.x / XL checkpoint (e.g. a diffusers-named file, a LoRA, a Flux/SD3 file).
CheckpointFamily detectFamily(const io::SafetensorsFile& file);

/// Loads an original SD 1.x / 2.x / XL `.safetensors` checkpoint and maps every key to its diffusers
/// name. `configDir` is a diffusers pipeline folder whose unet/, vae/, text_encoder/ (and for SDXL
/// text_encoder_2/) config.json fix the architecture (block types, layers per block,
/// transformer_layers_per_block, text-encoder layers and width); nothing is guessed from tensor
/// shapes. SDXL (after diffusers' convert_ldm_unet_checkpoint / convert_ldm_clip_checkpoint /
/// convert_open_clip_checkpoint): `label_emb.0.0/0.2` → `add_embedding.linear_1/2`;
/// `conditioner.embedders.0.transformer.text_model.*` → textEncoder;
/// `conditioner.embedders.1.model.*` (OpenCLIP, in_proj split) → textEncoder2, whose
/// `text_projection` [D, P] becomes `text_projection.weight` [P, D] (a contiguous copy). The refiner
/// layout (`conditioner.embedders.0.model.*` alone) → textEncoder2 with textEncoder empty; its
/// configDir needs no text_encoder/. The mapped tensors are views of the mapping
/// (OpenCLIP's fused in_proj is split into q/k/v views; the VAE mid-attention 1x1 conv weights
/// [C, C, 1, 1] become Linear [C, C] views).
/// Errors: E_MODEL_NOT_FOUND (file or config missing); E_BAD_CHECKPOINT for pickle files (.ckpt,
/// .pt, .pth, .bin: refused, with how to convert), an invalid safetensors file, or keys that map
/// to nothing (listed; only known-unused keys are skipped: `model_ema.*`, the DDPM schedule
/// buffers such as `alphas_cumprod`, CLIP's `position_ids`, OpenCLIP's `text_projection`,
/// `logit_scale` and the unused last resblock), or a component with no tensors at all (named);
/// E_INVALID_ARGUMENT when configDir's model_index.json is of another family (an SDXL file with an
/// SD 1.x folder or the reverse); E_UNSUPPORTED_MODEL for other families; E_BAD_CONFIG for a
/// config lacking a needed field. Missing tensors inside a component are reported by the model's
/// strict load (E_BAD_CHECKPOINT naming them).
SingleFileCheckpoint loadSingleFile(const std::string& path, const std::string& configDir);

/// The inverse of loadSingleFile: diffusers-named components (`components.family` picks the layout;
/// an SDXL set with an empty textEncoder gives the refiner layout) → the original-layout state dict
/// (`model.diffusion_model.*`, `first_stage_model.*` with VAE attention Linear [C, C] as 1x1 conv
/// [C, C, 1, 1], CLIP under `cond_stage_model.transformer.` / `conditioner.embedders.0.transformer.`
/// with a `position_ids` buffer [1, max_position_embeddings] int64, OpenCLIP under
/// `cond_stage_model.model.` / `conditioner.embedders.1.model.` with q/k/v re-fused into
/// `in_proj_weight` [3·D, D] / `in_proj_bias` [3·D] and `text_projection` = weightᵀ [D, P]).
/// After scripts/convert_diffusers_to_original_{stable_diffusion,sdxl}.py (diffusers v0.30.3).
/// Tensors are views or copies of the inputs. Errors: E_MODEL_NOT_FOUND / E_BAD_CONFIG for configs,
/// E_BAD_CHECKPOINT listing diffusers names with no original name (or a q/k/v triple missing a part).
io::StateDict toOriginalLayout(const SingleFileCheckpoint& components, const std::string& configDir);

/// The family of a diffusers pipeline folder: SDXL when model_index.json's `_class_name` starts with
/// StableDiffusionXL; else SD2 when text_encoder/config.json's hidden_act is "gelu" (OpenCLIP), SD1
/// for "quick_gelu" (OpenAI CLIP). E_UNSUPPORTED_MODEL without a text_encoder (non-XL).
CheckpointFamily folderFamily(const std::string& modelDir);

struct SingleFileSummary {
  std::string path;
  CheckpointFamily family = CheckpointFamily::SD1;
  bool refiner = false;  // SDXL refiner layout (no text_encoder)
  int64_t tensors = 0;
};

/// Writes the diffusers folder `modelDir` (weights `variant`, "" = default) as one original-layout
/// single-file checkpoint at `outFile` (safetensors, tensors in their stored dtypes): loadComponentWeights
/// per component → toOriginalLayout → writeSafetensors. loadSingleFile(outFile, modelDir) gives back
/// every tensor unchanged. Errors: those of readModelIndex / loadComponentWeights / toOriginalLayout,
/// and the writer's (E_INVALID_ARGUMENT when outFile cannot be written; written via a temporary + rename).
SingleFileSummary saveSingleFile(const std::string& modelDir, const std::string& outFile, const std::string& variant = "");

}  // namespace sd::loaders
