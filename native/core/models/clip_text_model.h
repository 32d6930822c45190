// CLIP text encoders of Stable Diffusion: transformers' CLIPTextModel (SD 1.x, SD 2.x, SDXL
// text_encoder) and CLIPTextModelWithProjection (SDXL text_encoder_2), as of transformers v4.40
// (src/transformers/models/clip/modeling_clip.py), loaded by transformers' parameter names.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "config/config_reader.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/weights.h"

namespace sd::models {

/// transformers' CLIPTextConfig, read from a text_encoder/config.json.
struct CLIPTextConfig {
  // Required (E_BAD_CONFIG naming the file and the field when absent).
  int64_t vocabSize = 0;              // vocab_size: rows of the token embedding (49408 for CLIP)
  int64_t hiddenSize = 0;             // hidden_size: D (768 SD1.x, 1024 SD2.x, 1280 SDXL-2)
  int64_t intermediateSize = 0;       // intermediate_size: MLP width
  int64_t numHiddenLayers = 0;        // num_hidden_layers: L
  int64_t numAttentionHeads = 0;      // num_attention_heads: H (D divisible by H)
  int64_t maxPositionEmbeddings = 0;  // max_position_embeddings: longest sequence (77)
  // Optional, with CLIPTextConfig's defaults.
  std::string hiddenAct = "quick_gelu";  // hidden_act: quick_gelu | gelu (exact erf) | gelu_new | ...
  double layerNormEps = 1e-5;            // layer_norm_eps
  int64_t projectionDim = 512;           // projection_dim: width of text_embeds (projection variant only)
  int64_t eosTokenId = 49407;            // eos_token_id; 2 (legacy configs) pools at argmax(input_ids)
  /// True when `architectures` names CLIPTextModelWithProjection (a bias-free text_projection).
  bool withProjection = false;

  /// Parses `path` (E_MODEL_NOT_FOUND when missing, E_BAD_CONFIG when malformed or incomplete,
  /// E_UNSUPPORTED_MODEL for an activation or architecture this port does not run).
  static CLIPTextConfig fromFile(const std::string& path);
  static CLIPTextConfig fromReader(const ConfigReader& r);
};

/// Outputs of CLIPTextModel::forward (transformers' BaseModelOutputWithPooling /
/// CLIPTextModelOutput), all in the model's compute dtype on its device.
struct CLIPTextOutput {
  at::Tensor lastHiddenState;             // [B, S, D] after final_layer_norm
  std::vector<at::Tensor> hiddenStates;   // L+1 × [B, S, D]: embeddings, then each layer (no final LN)
  at::Tensor pooled;                      // [B, D] final-LN'ed state at the EOS position (pooler_output)
  at::Tensor textEmbeds;                  // [B, projection_dim] = text_projection(pooled); undefined without projection
};

/// CLIPTextModel / CLIPTextModelWithProjection.
///
/// Weights (transformers names, D = hidden_size, I = intermediate_size, P = projection_dim):
///   text_model.embeddings.token_embedding.weight [vocab, D], .position_embedding.weight [77, D],
///   text_model.encoder.layers.N.{layer_norm1, layer_norm2}.{weight, bias} [D],
///   text_model.encoder.layers.N.self_attn.{q,k,v,out}_proj.{weight [D, D], bias [D]},
///   text_model.encoder.layers.N.mlp.fc1.{weight [I, D], bias [I]}, .mlp.fc2.{weight [D, I], bias [D]},
///   text_model.final_layer_norm.{weight, bias} [D], text_projection.weight [P, D] (projection only).
/// `text_model.embeddings.position_ids` (a buffer some files carry) is accepted and ignored.
///
/// Thread safety: forward calls may run concurrently; setTokenEmbeddings()/to() take an
/// exclusive lock.
class CLIPTextModel {
 public:
  /// Builds from a weight store (strict: E_BAD_CHECKPOINT naming any missing, mis-shaped or
  /// unused weight). Weights stay in their stored dtype/device until to() is called.
  CLIPTextModel(CLIPTextConfig config, nn::Weights weights);
  /// As above from a state dict (e.g. mapped from a single-file checkpoint); `component` names
  /// the source in error messages.
  CLIPTextModel(CLIPTextConfig config, nn::StateDict weights, const std::string& component = "text_encoder");

  /// Loads `<componentDir>/config.json` and `<componentDir>/model[.<variant>].safetensors`
  /// (or a sharded `model[.<variant>].safetensors.index.json`) and casts to `device`/`dtype`.
  /// E_MODEL_NOT_FOUND naming the missing folder or file; E_BAD_CHECKPOINT when only a pickle
  /// (`pytorch_model.bin`) is present; E_UNSUPPORTED_MODEL when `dtype` cannot run on `device`.
  static std::shared_ptr<CLIPTextModel> fromPretrained(const std::string& componentDir, at::Device device,
                                                       at::ScalarType dtype, const std::string& variant = "");

  /// Moves/casts the weights; the compute dtype follows. E_UNSUPPORTED_MODEL when this
  /// libtorch lacks a kernel the model needs for `dtype` on `device` (float16 on CPU in 1.13).
  void to(at::Device device, at::ScalarType dtype);
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

  /// input_ids int64 [B, S] (S ≤ max_position_embeddings, ids in [0, vocab_size); any device)
  /// → outputs. `outputHiddenStates` false leaves hiddenStates empty.
  /// E_INVALID_ARGUMENT for a wrong rank, length or id.
  CLIPTextOutput forward(const at::Tensor& inputIds, bool outputHiddenStates = true) const;

  /// hidden_states[index] of forward() (python indexing: 0 = embeddings, -1 = last layer, -2 =
  /// penultimate), running only the layers needed (clip skip). [B, S, D], no final LN.
  at::Tensor hiddenState(const at::Tensor& inputIds, int64_t index) const;

  /// text_model.final_layer_norm applied to x [..., D] (SD 1.x clip_skip: final LN of hidden_states[-(k+1)]).
  at::Tensor finalLayerNorm(const at::Tensor& x) const;

  /// Overwrites token embedding rows firstId … firstId+n−1 with `rows` [n, D], growing the
  /// table when they run past its end (transformers resize_token_embeddings + row assignment,
  /// as diffusers' load_textual_inversion does). firstId ≤ current vocab size.
  /// E_INVALID_ARGUMENT otherwise.
  void setTokenEmbeddings(int64_t firstId, const at::Tensor& rows);

  /// The config as loaded (vocabSize follows setTokenEmbeddings; read it through vocabSize()).
  const CLIPTextConfig& config() const { return config_; }
  /// Rows of the token embedding table (grows with setTokenEmbeddings).
  int64_t vocabSize() const;
  /// Shared by every attention layer; a pipeline may switch slicing/SDPA at run time.
  const std::shared_ptr<nn::AttentionOptions>& attentionOptions() const { return attention_; }
  const nn::Weights& weights() const { return *weights_; }
  nn::Weights& weights() { return *weights_; }

 private:
  struct EncoderLayer {
    nn::LayerNorm layerNorm1, layerNorm2;
    nn::Linear qProj, kProj, vProj, outProj, fc1, fc2;
  };
  void build();
  void checkIds(const at::Tensor& inputIds) const;  // caller holds mutex_
  at::Tensor embed(const at::Tensor& ids) const;                          // [B, S] → [B, S, D]
  at::Tensor layerForward(const EncoderLayer& layer, const at::Tensor& h, const at::Tensor& mask) const;
  at::Tensor causalMask(int64_t seqLen) const;                            // [1, 1, S, S]

  CLIPTextConfig config_;
  std::unique_ptr<nn::Weights> weights_;
  std::shared_ptr<nn::AttentionOptions> attention_ = std::make_shared<nn::AttentionOptions>();
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  mutable std::shared_mutex mutex_;

  nn::Embedding tokenEmbedding_, positionEmbedding_;
  std::vector<EncoderLayer> layers_;
  nn::LayerNorm finalLayerNorm_;
  nn::Linear textProjection_;
};

}  // namespace sd::models
