// transformers v4.40 models/clip/modeling_clip.py: CLIPTextTransformer, CLIPTextModel, CLIPTextModelWithProjection.
#include "models/clip_text_model.h"

#include "models/model_loading.h"
#include "io/checkpoint.h"
#include "runtime/dtype_support.h"

#include <ATen/Dispatch.h>
#include <torch/version.h>

#include <filesystem>
#include <limits>
#include <mutex>
#include <set>

#include "io/safetensors.h"
#include "runtime/cancellation.h"
#include "util/error.h"
#include "util/json.h"

namespace sd::models {

namespace fs = std::filesystem;

// ---- config ----------------------------------------------------------------------------------

CLIPTextConfig CLIPTextConfig::fromFile(const std::string& path) { return fromReader(ConfigReader::fromFile(path)); }

CLIPTextConfig CLIPTextConfig::fromReader(const ConfigReader& r) {
  CLIPTextConfig c;
  // Positive and capped (ConfigReader::kMax*, far above released CLIPs): a hostile config cannot allocate.
  c.vocabSize = r.requireIntIn("vocab_size", 1, ConfigReader::kMaxVocab);
  c.hiddenSize = r.requireIntIn("hidden_size", 1, ConfigReader::kMaxChannels);
  c.intermediateSize = r.requireIntIn("intermediate_size", 1, ConfigReader::kMaxChannels * 8);
  c.numHiddenLayers = r.requireIntIn("num_hidden_layers", 1, ConfigReader::kMaxLayers);
  c.numAttentionHeads = r.requireIntIn("num_attention_heads", 1, ConfigReader::kMaxChannels);
  c.maxPositionEmbeddings = r.requireIntIn("max_position_embeddings", 1, ConfigReader::kMaxPositions);
  if (c.hiddenSize % c.numAttentionHeads != 0)
    r.error("num_attention_heads", "(" + std::to_string(c.numAttentionHeads) + ") must divide hidden_size (" +
                                       std::to_string(c.hiddenSize) + ")");

  c.hiddenAct = r.getString("hidden_act", c.hiddenAct);
  static const std::set<std::string> kActivations = {"quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh",
                                                     "gelu_fast", "silu", "swish", "relu"};
  if (!kActivations.count(c.hiddenAct))
    fail(codes::kUnsupportedModel, r.file() + ": field \"hidden_act\" is \"" + c.hiddenAct +
                                       "\"; supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, "
                                       "silu, swish, relu");
  c.layerNormEps = r.getDouble("layer_norm_eps", c.layerNormEps);
  if (!(c.layerNormEps > 0)) r.error("layer_norm_eps", "must be a positive number");
  c.projectionDim = r.getInt("projection_dim", c.projectionDim);
  if (c.projectionDim > ConfigReader::kMaxChannels)
    r.error("projection_dim", "must be at most " + std::to_string(ConfigReader::kMaxChannels));
  c.eosTokenId = r.getInt("eos_token_id", c.eosTokenId);

  if (r.has("architectures")) {
    bool known = false;
    std::string names;
    for (const auto& a : r.requireStringList("architectures")) {
      names += (names.empty() ? "" : ", ") + a;
      if (a == "CLIPTextModelWithProjection") c.withProjection = known = true;
      if (a == "CLIPTextModel") known = true;
    }
    if (!known)
      fail(codes::kUnsupportedModel, r.file() + ": field \"architectures\" is [" + names +
                                         "]; a text encoder must be CLIPTextModel or CLIPTextModelWithProjection");
  }
  if (c.withProjection && c.projectionDim <= 0) r.error("projection_dim", "must be a positive integer");
  return c;
}

// ---- model -----------------------------------------------------------------------------------

CLIPTextModel::CLIPTextModel(CLIPTextConfig config, nn::Weights weights)
    : config_(std::move(config)), weights_(std::make_unique<nn::Weights>(std::move(weights))) {
  build();
}

CLIPTextModel::CLIPTextModel(CLIPTextConfig config, nn::StateDict weights, const std::string& component)
    : config_(std::move(config)), weights_(std::make_unique<nn::Weights>(std::move(weights), component)) {
  build();
}

void CLIPTextModel::build() {
  const int64_t d = config_.hiddenSize, inter = config_.intermediateSize;
  nn::Scope root(*weights_);
  nn::Scope tm = root.sub("text_model");
  tokenEmbedding_ = nn::Embedding(tm.sub("embeddings.token_embedding"), config_.vocabSize, d);
  positionEmbedding_ = nn::Embedding(tm.sub("embeddings.position_embedding"), config_.maxPositionEmbeddings, d);
  weights_->ignore(tm.join("embeddings.position_ids"));  // a buffer (arange), not a parameter
  layers_.reserve(config_.numHiddenLayers);
  for (int64_t i = 0; i < config_.numHiddenLayers; ++i) {
    nn::Scope l = tm.sub("encoder.layers", i);
    EncoderLayer layer;
    layer.layerNorm1 = nn::LayerNorm(l.sub("layer_norm1"), d, config_.layerNormEps);
    layer.qProj = nn::Linear(l.sub("self_attn.q_proj"), d, d);
    layer.kProj = nn::Linear(l.sub("self_attn.k_proj"), d, d);
    layer.vProj = nn::Linear(l.sub("self_attn.v_proj"), d, d);
    layer.outProj = nn::Linear(l.sub("self_attn.out_proj"), d, d);
    layer.layerNorm2 = nn::LayerNorm(l.sub("layer_norm2"), d, config_.layerNormEps);
    layer.fc1 = nn::Linear(l.sub("mlp.fc1"), d, inter);
    layer.fc2 = nn::Linear(l.sub("mlp.fc2"), inter, d);
    layers_.push_back(layer);
  }
  finalLayerNorm_ = nn::LayerNorm(tm.sub("final_layer_norm"), d, config_.layerNormEps);
  if (config_.withProjection)
    textProjection_ = nn::Linear(root.sub("text_projection"), d, config_.projectionDim, /*withBias=*/false);
  weights_->finish();
  device_ = tokenEmbedding_.weight->device();
  dtype_ = tokenEmbedding_.weight->scalar_type();
}

void CLIPTextModel::to(at::Device device, at::ScalarType dtype) {
  runtime::checkDtypeSupported(device, dtype, weights_->component());
  std::unique_lock lock(mutex_);
  weights_->to(device, dtype);
  device_ = device;
  dtype_ = dtype;
}

int64_t CLIPTextModel::vocabSize() const {
  std::shared_lock lock(mutex_);
  return tokenEmbedding_.weight->size(0);
}

void CLIPTextModel::checkIds(const at::Tensor& ids) const {
  if (!ids.defined() || ids.dim() != 2)
    fail(codes::kInvalidArgument, "input_ids must be a 2-d tensor [batch, sequence]" +
                                      (ids.defined() ? " (got shape " + nn::shapeString(ids.sizes()) + ")" : ""));
  if (ids.scalar_type() != at::kLong && ids.scalar_type() != at::kInt)
    fail(codes::kInvalidArgument, "input_ids must be int64 (got " + runtime::dtypeName(ids.scalar_type()) + ")");
  if (ids.size(0) < 1 || ids.size(1) < 1 || ids.size(1) > config_.maxPositionEmbeddings)
    fail(codes::kInvalidArgument, "input_ids has shape " + nn::shapeString(ids.sizes()) +
                                      "; needs batch ≥ 1 and 1 ≤ sequence length ≤ max_position_embeddings (" +
                                      std::to_string(config_.maxPositionEmbeddings) + ")");
  // Range check on the host: an out-of-range id is a device-side assert on CUDA.
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  const int64_t vocab = tokenEmbedding_.weight->size(0);  // caller holds the lock
  if (lo < 0 || hi >= vocab)
    fail(codes::kInvalidArgument, "input_ids holds token id " + std::to_string(lo < 0 ? lo : hi) +
                                      ", outside the text encoder's vocabulary [0, " + std::to_string(vocab) + ")");
}

at::Tensor CLIPTextModel::embed(const at::Tensor& ids) const {
  const int64_t s = ids.size(1);
  at::Tensor tokens = tokenEmbedding_(ids);                                        // [B, S, D]
  at::Tensor positions = positionEmbedding_(at::arange(s, ids.options()));         // [S, D]
  return tokens + positions;                                                       // [B, S, D]
}

at::Tensor CLIPTextModel::causalMask(int64_t seqLen) const {
  // transformers _create_4d_causal_attention_mask: torch.finfo(dtype).min above the diagonal.
  double lowest = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype_, "clip_causal_mask", [&] {
    lowest = static_cast<double>(std::numeric_limits<scalar_t>::lowest());
  });
  return at::full({seqLen, seqLen}, lowest, at::TensorOptions().device(device_).dtype(dtype_))
      .triu(1)
      .view({1, 1, seqLen, seqLen});  // [1, 1, S, S]
}

at::Tensor CLIPTextModel::layerForward(const EncoderLayer& layer, const at::Tensor& h, const at::Tensor& mask) const {
  // CLIPEncoderLayer: pre-LN self-attention and MLP, each with a residual.
  runtime::throwIfAborted("a text encoder layer");  // between layers (forward and hiddenState)
  at::Tensor x = layer.layerNorm1(h);                                              // [B, S, D]
  at::Tensor q = layer.qProj(x), k = layer.kProj(x), v = layer.vProj(x);          // [B, S, D]
  // CLIPAttention scales q by head_dim^-0.5 before q·kᵀ; nn::attention applies the same scale
  // in the product (alpha of baddbmm), equal up to float rounding.
  at::Tensor a = nn::attention(q, k, v, config_.numAttentionHeads, *attention_, mask);  // [B, S, D]
  at::Tensor r = h + layer.outProj(a);                                             // [B, S, D]
  x = layer.layerNorm2(r);
  x = layer.fc2(nn::activation(config_.hiddenAct, layer.fc1(x)));                 // [B, S, I] → [B, S, D]
  return r + x;                                                                    // [B, S, D]
}

CLIPTextOutput CLIPTextModel::forward(const at::Tensor& inputIds, bool outputHiddenStates) const {
  std::shared_lock lock(mutex_);
  checkIds(inputIds);
  const at::Tensor ids = inputIds.to(device_, at::kLong);                          // [B, S]
  const int64_t b = ids.size(0), s = ids.size(1), d = config_.hiddenSize;

  CLIPTextOutput out;
  at::Tensor h = embed(ids);                                                       // [B, S, D]
  const at::Tensor mask = causalMask(s);                                           // [1, 1, S, S]
  if (outputHiddenStates) out.hiddenStates.push_back(h);
  for (const auto& layer : layers_) {
    h = layerForward(layer, h, mask);
    if (outputHiddenStates) out.hiddenStates.push_back(h);
  }
  out.lastHiddenState = finalLayerNorm_(h);                                        // [B, S, D]

  // Pooling: legacy configs (eos_token_id == 2) take argmax(input_ids) — the first
  // <|endoftext|>, the highest id of CLIP's vocabulary; others the first id == eos_token_id.
  at::Tensor index = config_.eosTokenId == 2 ? ids.argmax(-1)
                                             : ids.eq(config_.eosTokenId).to(at::kInt).argmax(-1);  // [B]
  out.pooled = out.lastHiddenState.gather(1, index.view({b, 1, 1}).expand({b, 1, d})).squeeze(1);  // [B, D]
  if (config_.withProjection) out.textEmbeds = textProjection_(out.pooled);       // [B, P]
  return out;
}

at::Tensor CLIPTextModel::hiddenState(const at::Tensor& inputIds, int64_t index) const {
  std::shared_lock lock(mutex_);
  const int64_t count = config_.numHiddenLayers + 1;
  const int64_t i = index < 0 ? count + index : index;
  if (i < 0 || i >= count)
    fail(codes::kInvalidArgument, "hidden state index " + std::to_string(index) + " is out of range for a " +
                                      std::to_string(config_.numHiddenLayers) + "-layer text encoder (valid: " +
                                      std::to_string(-count) + " … " + std::to_string(count - 1) + ")");
  checkIds(inputIds);
  const at::Tensor ids = inputIds.to(device_, at::kLong);                          // [B, S]
  at::Tensor h = embed(ids);                                                       // [B, S, D]
  if (i == 0) return h;
  const at::Tensor mask = causalMask(ids.size(1));
  for (int64_t l = 0; l < i; ++l) h = layerForward(layers_[l], h, mask);
  return h;                                                                        // [B, S, D]
}

at::Tensor CLIPTextModel::finalLayerNorm(const at::Tensor& x) const {
  std::shared_lock lock(mutex_);
  if (!x.defined() || x.dim() < 1 || x.size(-1) != config_.hiddenSize)
    fail(codes::kInvalidArgument, "finalLayerNorm: input must end in hidden_size (" +
                                      std::to_string(config_.hiddenSize) + ")" +
                                      (x.defined() ? ", got shape " + nn::shapeString(x.sizes()) : ""));
  return finalLayerNorm_(x.to(device_, dtype_));
}

void CLIPTextModel::setTokenEmbeddings(int64_t firstId, const at::Tensor& rows) {
  std::unique_lock lock(mutex_);
  at::Tensor& w = *tokenEmbedding_.weight;  // [vocab, D]
  const int64_t vocab = w.size(0), d = w.size(1);
  if (!rows.defined() || rows.dim() != 2 || rows.size(1) != d || !at::isFloatingType(rows.scalar_type()))
    fail(codes::kInvalidArgument, "token embedding rows must be a float tensor [n, " + std::to_string(d) + "]" +
                                      (rows.defined() ? " (got " + nn::shapeString(rows.sizes()) + ")" : ""));
  if (firstId < 0 || firstId > vocab)
    fail(codes::kInvalidArgument, "token embedding rows start at id " + std::to_string(firstId) +
                                      "; must be within [0, " + std::to_string(vocab) + "] (the current vocabulary size)");
  const int64_t n = rows.size(0), newVocab = std::max(vocab, firstId + n);
  at::Tensor r = rows.to(w.device(), w.scalar_type());
  if (newVocab > vocab) {  // resize_token_embeddings: keep the old rows, append new ones
    at::Tensor grown = at::zeros({newVocab, d}, w.options());
    grown.slice(0, 0, vocab).copy_(w);
    w = grown;
  }
  w.slice(0, firstId, firstId + n).copy_(r);
  config_.vocabSize = newVocab;
}

// ---- loading ---------------------------------------------------------------------------------

std::shared_ptr<CLIPTextModel> CLIPTextModel::fromPretrained(const std::string& componentDir, at::Device device,
                                                             at::ScalarType dtype, const std::string& variant) {
  return loadComponent<std::shared_ptr<CLIPTextModel>, CLIPTextConfig>(componentDir, "text_encoder", "model", device, dtype, variant);
}

}  // namespace sd::models
