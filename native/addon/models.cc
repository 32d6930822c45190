// Bindings for model-level tools: random weights for create-model.
#include "addon/bindings.h"
#include "addon/util.h"
#include "io/safetensors.h"
#include "models/random_weights.h"
#include "pipelines/pipeline_base.h"

namespace sd::addon {

namespace {

// createRandomWeights({component, configPath, seed, out, dtype, device?}) → Promise<{parameters, bytes}>
// device: "cpu" (default) | "cuda" | "cuda:N": where the weights are drawn (written from the CPU).
Napi::Value CreateRandomWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throwInvalid(env, "createRandomWeights(options)");
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string component = getString(o, "component", "");
  const std::string configPath = getString(o, "configPath", "");
  const std::string out = getString(o, "out", "");
  const double seed = getNumber(o, "seed", 0);
  const std::string dtypeName = getString(o, "dtype", "float32");
  const std::string deviceName = getString(o, "device", "cpu");
  if (out.empty() || configPath.empty()) throwInvalid(env, "createRandomWeights: configPath and out are required");
  if (!(seed >= 0)) throwInvalid(env, "createRandomWeights: seed must be a non-negative integer");
  at::ScalarType dtype = at::kFloat;
  if (dtypeName == "float16") dtype = at::kHalf;
  else if (dtypeName == "bfloat16") dtype = at::kBFloat16;
  else if (dtypeName != "float32") throwInvalid(env, "createRandomWeights: dtype must be float32, float16 or bfloat16");
  if (deviceName != "cpu" && deviceName.rfind("cuda", 0) != 0)
    throwInvalid(env, "createRandomWeights: device must be \"cpu\", \"cuda\" or \"cuda:N\"; received \"" + deviceName + "\"");
  struct Result { int64_t parameters = 0, bytes = 0; };
  return runAsync<Result>(
      env,
      [=] {
        // parsed here so that a bad index or a missing CUDA rejects the promise (E_DEVICE_UNAVAILABLE)
        const at::Device device = pipelines::parseDevice(deviceName);
        nn::StateDict w = models::createRandomWeights(component, configPath, static_cast<uint64_t>(seed), dtype, device);
        Result r;
        std::vector<std::pair<std::string, at::Tensor>> list;
        for (auto& [k, v] : w) {
          r.parameters += v.numel();
          r.bytes += v.numel() * static_cast<int64_t>(v.element_size());
          list.emplace_back(k, v);
        }
        io::writeSafetensors(out, list, {{"format", "pt"}});
        return r;
      },
      [](Napi::Env env, Result& r) -> Napi::Value {
        Napi::Object res = Napi::Object::New(env);
        res.Set("parameters", Napi::Number::New(env, static_cast<double>(r.parameters)));
        res.Set("bytes", Napi::Number::New(env, static_cast<double>(r.bytes)));
        return res;
      });
}

}  // namespace

void InitModels(Napi::Env env, Napi::Object exports) {
  exports.Set("createRandomWeights", Napi::Function::New(env, CreateRandomWeights));
}

}  // namespace sd::addon
