// Kernel-availability probe per (device, dtype), shared by every model's to()/fromPretrained().
#include "runtime/dtype_support.h"

#include <torch/version.h>

#include <map>
#include <mutex>

#include "util/error.h"

namespace sd::runtime {

std::string dtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kDouble: return "float64";
    default: return c10::toString(t);
  }
}

namespace {

// "" when every op ran, else "<op> failed: <first line of the libtorch message>".
std::string probe(at::Device device, at::ScalarType dtype) {
  std::string op;
  try {
    const auto o = at::TensorOptions().device(device).dtype(dtype);
    op = "embedding";
    at::Tensor table = at::ones({4, 2}, o);
    (void)at::embedding(table, at::zeros({1, 2}, at::TensorOptions().device(device).dtype(at::kLong)));
    at::Tensor x = at::ones({1, 2, 4, 4}, o);
    op = "conv2d";
    at::Tensor y = at::conv2d(x, at::ones({2, 2, 3, 3}, o), at::ones({2}, o), {1, 1}, {1, 1});
    op = "group_norm";
    y = at::group_norm(y, 1, at::ones({2}, o), at::zeros({2}, o), 1e-5);
    op = "silu";
    y = at::silu(y);
    op = "upsample_nearest2d";  // the models upcast bfloat16 for it, as diffusers does
    (void)at::upsample_nearest2d(y.to(dtype == at::kBFloat16 ? at::kFloat : dtype), {8, 8});
    at::Tensor t = y.reshape({1, 2, 16}).transpose(1, 2);  // [1, 16, 2]
    op = "layer_norm";
    t = at::layer_norm(t, {2}, at::ones({2}, o), at::zeros({2}, o), 1e-5);
    op = "linear";
    t = at::linear(t, at::ones({4, 2}, o), at::ones({4}, o));  // [1, 16, 4]
    op = "gelu";
    t = at::gelu(t) + t * at::sigmoid(t);
    op = "baddbmm";
    at::Tensor s = at::baddbmm(at::zeros({1, 16, 16}, o), t, t.transpose(1, 2), 0, 0.5);
    op = "softmax";
    s = at::softmax(s, -1, at::kFloat).to(dtype);
    op = "bmm";
    (void)at::bmm(s, t).sum().item<double>();
    return "";
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    return op + " failed: " + msg;
  }
}

}  // namespace

void checkDtypeSupported(at::Device device, at::ScalarType dtype, const std::string& what) {
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kDouble)
    fail(codes::kInvalidArgument, what + ": compute dtype must be float32, float16 or bfloat16 (got " +
                                      dtypeName(dtype) + ")");
  if (device.is_cuda() && !at::hasCUDA())
    fail(codes::kDeviceUnavailable, what + ": device " + device.str() + " requested but this build or machine has no CUDA");
  // Never destroyed: a generation still running on a worker thread while the process exits must
  // not lock a destroyed mutex (std::system_error at exit).
  static std::mutex& mu = *new std::mutex;
  static auto& cache = *new std::map<std::pair<int, int>, std::string>;  // (device type, dtype) → "" or the failure
  std::string failure;
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto key = std::make_pair(static_cast<int>(device.type()), static_cast<int>(dtype));
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, probe(device, dtype)).first;
    failure = it->second;
  }
  if (!failure.empty())
    fail(codes::kUnsupportedModel, what + ": " + dtypeName(dtype) + " compute on " + device.str() +
                                       " is not supported by this libtorch (" + TORCH_VERSION + "; " + failure + ")" +
                                       (device.is_cpu() ? "; on CPU use float32 or bfloat16, or float16 on CUDA" : ""));
}

}  // namespace sd::runtime
