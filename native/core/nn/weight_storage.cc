// AUTOMATIC1111 modules/sd_models.py (fp8 storage of UNet Linear/Conv weights) and
// modules/devices.py (manual_cast: cast each weight to the compute dtype at use); torch
// channels_last; accelerate cpu_offload (pinned host weights).
#include "nn/weight_storage.h"

#include "io/safetensors.h"
#include "util/error.h"
#include "util/torch_compat.h"

namespace sd::nn {

namespace {
bool isE4m3(const std::string& format) {
  if (format == "e4m3fn") return true;
  if (format == "e5m2") return false;
  fail(codes::kInvalidArgument, "fp8 format must be \"e4m3fn\" or \"e5m2\"; received \"" + format + "\"");
}
}  // namespace

at::ScalarType fp8StorageDtype(const std::string& format) {
  const bool e4m3 = isE4m3(format);
#ifdef SD_HAVE_FLOAT8
  return e4m3 ? at::kFloat8_e4m3fn : at::kFloat8_e5m2;
#else
  return e4m3 ? at::kByte : at::kChar;
#endif
}

bool isFp8Storage(const at::Tensor& w) {
  const at::ScalarType t = w.scalar_type();
#ifdef SD_HAVE_FLOAT8
  return t == at::kFloat8_e4m3fn || t == at::kFloat8_e5m2;
#else
  return t == at::kByte || t == at::kChar;
#endif
}

at::Tensor decodeFp8Storage(const at::Tensor& w, at::Device device, at::ScalarType dtype) {
  at::Tensor bytes = w.device() == device ? w : w.to(device, /*non_blocking=*/true);  // 1 byte/element over the bus
#ifdef SD_HAVE_FLOAT8
  return bytes.to(dtype);
#else
  const std::string format = bytes.scalar_type() == at::kByte ? "e4m3fn" : "e5m2";
  at::Tensor codes = bytes.scalar_type() == at::kByte ? bytes : bytes.view(at::kByte);
  return io::decodeFp8(codes, format, dtype);  // straight to the compute dtype (256-entry table)
#endif
}

at::Tensor encodeFp8Storage(const at::Tensor& values, const std::string& format) {
  const at::ScalarType storage = fp8StorageDtype(format);
#ifdef SD_HAVE_FLOAT8
  const double maxFinite = storage == at::kFloat8_e4m3fn ? 448.0 : 57344.0;
  return at::clamp(values, -maxFinite, maxFinite).to(storage);  // RNE; clamp makes it saturate
#else
  // uint8 OCP codes, RNE, saturating (encodeFp8 works on a flat tensor)
  at::Tensor codes = io::encodeFp8(values.reshape({-1}), format).reshape(values.sizes()).to(values.device());
  return codes.view(storage);  // same bytes, typed by format
#endif
}

int64_t storeFp8(Weights& weights, const std::string& format) {
  int64_t converted = 0;
  for (auto& [name, t] : weights.tensors()) {
    if (t.dim() < 2 || !at::isFloatingType(t.scalar_type()) || isFp8Storage(t)) continue;
    t = encodeFp8Storage(t, format);
    ++converted;
  }
  return converted;
}

std::vector<std::string> fp8StoredNames(const Weights& weights) {
  std::vector<std::string> names;
  for (const auto& [name, t] : weights.tensors())
    if (isFp8Storage(t)) names.push_back(name);
  return names;
}

void setMemoryFormat(Weights& weights, at::MemoryFormat format) {
  for (auto& [name, t] : weights.tensors())
    if (t.dim() == 4) t = t.contiguous(format);
}

void offloadToPinnedCpu(Weights& weights) {
  for (auto& [name, t] : weights.tensors()) {
    at::Tensor cpu = t.device().is_cpu() ? t : t.to(at::kCPU);
    t = at::hasCUDA() && !cpu.is_pinned() ? cpu.pin_memory() : cpu;
  }
}

void moveTo(Weights& weights, at::Device device) {
  if (device.is_cpu()) return offloadToPinnedCpu(weights);
  for (auto& [name, t] : weights.tensors())
    if (t.device() != device) t = t.to(device, /*non_blocking=*/true);
}

}  // namespace sd::nn
