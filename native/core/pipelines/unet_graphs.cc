#include "pipelines/unet_graphs.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>

#include "models/unet_2d_condition.h"
#include "nn/attention.h"
#include "nn/weights.h"
#include "util/error.h"

namespace sd::pipelines {

namespace {

// FNV-1a over the bytes of each value fed in
class Hasher {
 public:
  template <typename T>
  void add(const T& v) {
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    for (unsigned char b : bytes) h_ = (h_ ^ b) * 1099511628211ull;
  }
  void add(const std::string& s) {
    for (unsigned char b : s) h_ = (h_ ^ b) * 1099511628211ull;
    add(s.size());
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 1469598103934665603ull;
};

void addTensor(Hasher& h, const at::Tensor& t) {
  h.add(t.defined());
  if (!t.defined()) return;
  h.add(reinterpret_cast<uintptr_t>(t.data_ptr()));
  h.add(static_cast<int>(t.scalar_type()));
  h.add(t.device().index());
  h.add(static_cast<int>(t.device().type()));
}

// A static input: same shape, dtype and (when dense) strides as `x`, on `device`.
at::Tensor staticLike(const at::Tensor& x, at::Device device) {
  if (x.is_non_overlapping_and_dense())
    return at::empty_strided(x.sizes(), x.strides(), x.options().device(device));
  return at::empty(x.sizes(), x.options().device(device));
}

void describe(std::ostringstream& s, const char* name, const at::Tensor& t) {
  s << name << ':';
  if (!t.defined()) {
    s << "none;";
    return;
  }
  s << c10::toString(t.scalar_type()) << t.sizes() << t.strides() << ';';
}

}  // namespace

bool cudaGraphsEmulated() {
  const char* v = std::getenv("SD_NATIVE_CUDA_GRAPHS_EMULATE");
  return v && std::string(v) == "1";
}

struct UNetGraphs::Graph {
  std::string signature;
  at::Tensor sample, timestep, encoderHiddenStates;  // static inputs
  models::UNetAddedCond added;                       // static (SDXL) or undefined
  bool hasAdded = false;
  std::unique_ptr<runtime::DeviceGraph> graph;
};

UNetGraphs::UNetGraphs(runtime::DeviceGraph::Kind kind, at::Device device, size_t maxGraphs)
    : kind_(kind), device_(device), maxGraphs_(maxGraphs < 1 ? 1 : maxGraphs) {
  // fails now (E_UNSUPPORTED_MODEL / E_INVALID_ARGUMENT) rather than at the first step
  if (kind_ == runtime::DeviceGraph::Kind::kCuda) runtime::DeviceGraph probe(kind_, device_);
}

UNetGraphs::~UNetGraphs() = default;

void UNetGraphs::clear() { graphs_.clear(); }

uint64_t UNetGraphs::modelFingerprint(const models::UNet2DConditionModel& unet) {
  Hasher h;
  h.add(reinterpret_cast<uintptr_t>(&unet));
  h.add(static_cast<int>(unet.dtype()));
  h.add(static_cast<int>(unet.device().type()));
  h.add(unet.device().index());
  const nn::Weights& w = unet.weights();
  for (const auto& [name, t] : w.tensors()) addTensor(h, t);
  auto& slots = const_cast<nn::Weights&>(w).loraSlots();  // read only
  for (const auto& [module, slot] : slots) {
    h.add(slot->fused);
    h.add(slot->deltas.size());
    h.add(slot->scale ? *slot->scale : 1.0);
    for (const nn::LoraDelta& d : slot->deltas) {
      h.add(d.active);
      h.add(d.scaling());
      addTensor(h, d.down);
      addTensor(h, d.up);
    }
  }
  const nn::AttentionOptions& a = *unet.attentionOptions();
  h.add(a.sliceSize);
  h.add(static_cast<int>(a.backend));
  h.add(a.budgetBytes);
  const at::Context& ctx = at::globalContext();
  h.add(ctx.userEnabledCuDNN());
  h.add(ctx.benchmarkCuDNN());
  h.add(ctx.deterministicCuDNN());
  h.add(ctx.allowTF32CuBLAS());
  h.add(ctx.allowTF32CuDNN());
  return h.value();
}

std::string UNetGraphs::signature(const at::Tensor& sample, const at::Tensor& timestep,
                                  const at::Tensor& encoderHiddenStates, const models::UNetAddedCond* added) {
  std::ostringstream s;
  describe(s, "sample", sample);
  describe(s, "t", timestep);
  describe(s, "ehs", encoderHiddenStates);
  describe(s, "te", added ? added->textEmbeds : at::Tensor());
  describe(s, "ti", added ? added->timeIds : at::Tensor());
  return s.str();
}

at::Tensor UNetGraphs::forward(const models::UNet2DConditionModel& unet, const at::Tensor& sample,
                               const at::Tensor& timestep, const at::Tensor& encoderHiddenStates,
                               const models::UNetAddedCond* added) {
  const uint64_t fp = modelFingerprint(unet);
  if (fp != fingerprint_) {
    if (!graphs_.empty()) ++invalidations_;
    graphs_.clear();
    fingerprint_ = fp;
  }
  const std::string sig = signature(sample, timestep, encoderHiddenStates, added);
  auto fill = [&](Graph& g) {
    g.sample.copy_(sample, /*non_blocking=*/true);
    g.timestep.copy_(timestep, /*non_blocking=*/true);
    g.encoderHiddenStates.copy_(encoderHiddenStates, /*non_blocking=*/true);
    if (g.hasAdded) {
      g.added.textEmbeds.copy_(added->textEmbeds, /*non_blocking=*/true);
      g.added.timeIds.copy_(added->timeIds, /*non_blocking=*/true);
    }
  };
  for (auto it = graphs_.begin(); it != graphs_.end(); ++it) {
    if ((*it)->signature != sig) continue;
    if (it != graphs_.begin()) graphs_.splice(graphs_.begin(), graphs_, it);  // most recent first
    Graph& g = *graphs_.front();
    fill(g);
    g.graph->replay();
    ++replays_;
    return g.graph->output().clone();
  }

  // a new signature: static inputs, filled with this step's values, then warm-up + capture
  auto g = std::make_unique<Graph>();
  g->signature = sig;
  const at::Device dev = unet.device();
  g->sample = staticLike(sample, dev);
  g->timestep = staticLike(timestep, dev);
  g->encoderHiddenStates = staticLike(encoderHiddenStates, dev);
  g->hasAdded = added && added->textEmbeds.defined() && added->timeIds.defined();
  if (g->hasAdded) {
    g->added.textEmbeds = staticLike(added->textEmbeds, dev);
    g->added.timeIds = staticLike(added->timeIds, dev);
  }
  fill(*g);
  g->graph = std::make_unique<runtime::DeviceGraph>(kind_, device_);
  // the body reads only the static inputs (kept alive by the Graph, which owns the DeviceGraph)
  const Graph* raw = g.get();
  const models::UNet2DConditionModel* model = &unet;
  at::Tensor out = g->graph->warmUpAndCapture(
      [raw, model]() {
        return model->forward(raw->sample, raw->timestep, raw->encoderHiddenStates,
                              raw->hasAdded ? &raw->added : nullptr, nullptr);
      },
      &pool_);
  ++captures_;
  graphs_.push_front(std::move(g));
  while (graphs_.size() > maxGraphs_) graphs_.pop_back();
  return out;
}

}  // namespace sd::pipelines
