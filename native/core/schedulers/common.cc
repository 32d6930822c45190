// Shared scheduler helpers following diffusers v0.30.3 src/diffusers/schedulers/scheduling_ddim.py
// (betas_for_alpha_bar, rescale_zero_terminal_snr) and the numpy code of the Karras-style
// schedulers (np.linspace / np.arange / np.interp / _sigma_to_t / _convert_to_karras).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")  // numpy does not fuse multiply-adds; neither may we
#endif
#include "schedulers/common.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "util/error.h"

namespace sd::schedulers::detail {

// ---- config ------------------------------------------------------------------------------------

ConfigReader configReader(const Json& config, const char* className) {
  if (!config.isObject()) fail(codes::kBadConfig, std::string(className) + " config: expected a JSON object");
  return ConfigReader(config, std::string(className) + " config");
}

std::string enumField(const ConfigReader& cfg, const std::string& key, const std::string& fallback,
                      const std::vector<std::string>& allowed) {
  std::string v = cfg.getString(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + ("\"" + a + "\"");
    cfg.error(key, "is \"" + v + "\"; expected one of " + list);
  }
  return v;
}

void unsupported(const char* className, const std::string& key, const std::string& value, const std::string& hint) {
  fail(codes::kUnsupportedModel, std::string(className) + ": " + key + " = " + value +
                                     " is not supported by sd-native" + (hint.empty() ? "" : " (" + hint + ")"));
}

// ---- betas -------------------------------------------------------------------------------------

namespace {
// diffusers betas_for_alpha_bar(num_diffusion_timesteps, max_beta=0.999, alpha_transform_type).
// Python float arithmetic: t = i / N is true division (the integer-division pitfall would
// collapse every t to 0).
at::Tensor betasForAlphaBar(int64_t n, bool cosine) {
  auto alphaBar = [cosine](double t) {
    if (cosine) {
      const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
      return c * c;
    }
    return std::exp(t * -12.0);
  };
  std::vector<double> betas(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(n);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(n);
    betas[static_cast<size_t>(i)] = std::min(1 - alphaBar(t2) / alphaBar(t1), 0.999);
  }
  return floatTensor(betas);
}
}  // namespace

at::Tensor makeBetas(const ConfigReader& cfg, const BetaDefaults& d, int64_t& numTrainTimesteps) {
  numTrainTimesteps = cfg.getInt("num_train_timesteps", 1000);
  if (numTrainTimesteps < 2 || numTrainTimesteps > 100000)
    cfg.error("num_train_timesteps", "must be an integer in [2, 100000], got " + std::to_string(numTrainTimesteps));
  if (auto trained = cfg.getDoubleList("trained_betas")) {
    if (static_cast<int64_t>(trained->size()) != numTrainTimesteps)
      cfg.error("trained_betas", "has " + std::to_string(trained->size()) + " entries, expected num_train_timesteps = " +
                                     std::to_string(numTrainTimesteps));
    for (double b : *trained)
      if (!(b >= 0 && b < 1)) cfg.error("trained_betas", "must hold numbers in [0, 1), got " + std::to_string(b));
    return floatTensor(*trained);  // torch.tensor(trained_betas, dtype=torch.float32)
  }
  // "exp" (DPMSolverMultistep only) is last, so the allowed names are a prefix of this list.
  static const std::vector<std::string> kSchedules = {"linear", "scaled_linear", "squaredcos_cap_v2", "exp"};
  const std::vector<std::string> allowed(kSchedules.begin(), kSchedules.end() - (d.allowExp ? 0 : 1));
  const std::string schedule = enumField(cfg, "beta_schedule", d.betaSchedule, allowed);
  // A beta is a per-step noise variance: in (0, 1), or alphas_cumprod holds zeros / NaNs
  // (sqrt of a negative beta_start under scaled_linear) and every sigma after it is garbage.
  const double betaStart = cfg.getDouble("beta_start", d.betaStart);
  const double betaEnd = cfg.getDouble("beta_end", d.betaEnd);
  if (!(betaStart > 0 && betaStart < 1)) cfg.error("beta_start", "must be a number in (0, 1), got " + std::to_string(betaStart));
  if (!(betaEnd > 0 && betaEnd < 1)) cfg.error("beta_end", "must be a number in (0, 1), got " + std::to_string(betaEnd));
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  if (schedule == "linear") return at::linspace(betaStart, betaEnd, numTrainTimesteps, f32);
  if (schedule == "scaled_linear")
    return at::linspace(std::pow(betaStart, 0.5), std::pow(betaEnd, 0.5), numTrainTimesteps, f32).pow(2);
  return betasForAlphaBar(numTrainTimesteps, schedule == "squaredcos_cap_v2");
}

void initNoiseSchedule(const ConfigReader& cfg, const BetaDefaults& defaults, ZeroSnr zeroSnr,
                       int64_t& numTrainTimesteps, at::Tensor& betas, at::Tensor& alphasCumprod) {
  betas = makeBetas(cfg, defaults, numTrainTimesteps);
  const bool rescale = zeroSnr != ZeroSnr::kNone && cfg.getBool("rescale_betas_zero_snr", false);
  if (rescale) betas = rescaleZeroTerminalSnr(betas);
  alphasCumprod = at::cumprod(at::rsub(betas, 1.0), 0);  // [T]
  if (rescale && zeroSnr == ZeroSnr::kSigmaSafe) alphasCumprod[-1].fill_(std::ldexp(1.0, -24));
}

at::Tensor rescaleZeroTerminalSnr(const at::Tensor& betas) {
  at::Tensor alphas = at::rsub(betas, 1.0);
  at::Tensor alphasCumprod = at::cumprod(alphas, 0);
  at::Tensor alphasBarSqrt = alphasCumprod.sqrt();
  at::Tensor s0 = alphasBarSqrt[0].clone();
  at::Tensor sT = alphasBarSqrt[-1].clone();
  alphasBarSqrt -= sT;                       // shift so the last timestep is zero
  alphasBarSqrt *= s0 / (s0 - sT);           // scale so the first timestep is back to the old value
  at::Tensor alphasBar = alphasBarSqrt.pow(2);
  const int64_t n = alphasBar.size(0);
  at::Tensor a = alphasBar.slice(0, 1, n) / alphasBar.slice(0, 0, n - 1);  // revert cumprod
  a = at::cat({alphasBar.slice(0, 0, 1), a});
  return at::rsub(a, 1);
}

at::Tensor trainSigmas(const at::Tensor& alphasCumprod) {
  return (at::rsub(alphasCumprod, 1) / alphasCumprod).pow(0.5);
}

// ---- numpy emulation ---------------------------------------------------------------------------

std::vector<double> npLinspace(double start, double stop, int64_t num, bool endpoint) {
  std::vector<double> y(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num <= 0) return y;
  const int64_t div = endpoint ? num - 1 : num;
  const double delta = stop - start;
  if (div > 0) {
    const double step = delta / static_cast<double>(div);
    for (int64_t i = 0; i < num; ++i) {
      double v = static_cast<double>(i);
      if (step == 0) v = v / static_cast<double>(div) * delta;
      else v = v * step;
      y[static_cast<size_t>(i)] = v + start;
    }
  } else {
    y[0] = start;  // num == 1 with endpoint: [start]
  }
  if (endpoint && num > 1) y.back() = stop;
  return y;
}

std::vector<double> npArange(double start, double stop, double step) {
  const double lenD = std::ceil((stop - start) / step);
  if (!(lenD > 0)) return {};
  const auto len = static_cast<int64_t>(lenD);
  std::vector<double> out(static_cast<size_t>(len));
  out[0] = start;
  if (len > 1) out[1] = start + step;
  const double delta = (len > 1 ? out[1] : start + step) - start;
  for (int64_t i = 2; i < len; ++i) out[static_cast<size_t>(i)] = start + static_cast<double>(i) * delta;
  return out;
}

double npRound(double x) { return std::nearbyint(x); }  // default rounding mode: half to even

std::vector<double> npInterpIndex(const std::vector<double>& x, const std::vector<double>& fp) {
  const int64_t n = static_cast<int64_t>(fp.size());
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xv = x[i];
    if (std::isnan(xv)) { out[i] = xv; continue; }
    if (xv < 0) { out[i] = fp.front(); continue; }
    if (xv >= static_cast<double>(n - 1)) { out[i] = fp.back(); continue; }
    const auto j = static_cast<int64_t>(std::floor(xv));
    const double dj = static_cast<double>(j);
    if (dj == xv) { out[i] = fp[static_cast<size_t>(j)]; continue; }
    const double slope = (fp[static_cast<size_t>(j + 1)] - fp[static_cast<size_t>(j)]) / 1.0;  // dx = 1
    out[i] = slope * (xv - dj) + fp[static_cast<size_t>(j)];
  }
  return out;
}

double sigmaToT(double sigma, const std::vector<float>& logSigmas) {
  const double logSigma = std::log(std::max(sigma, 1e-10));
  const auto n = static_cast<int64_t>(logSigmas.size());
  // dists = log_sigma - log_sigmas[:, None] (float32 under numpy 1.24 value-based casting);
  // low_idx = cumsum(dists >= 0).argmax() = the last index with dists >= 0 (0 when none).
  const float logSigmaF = static_cast<float>(logSigma);
  int64_t low = 0;
  for (int64_t i = 0; i < n; ++i)
    if (logSigmaF - logSigmas[static_cast<size_t>(i)] >= 0.0f) low = i;
  low = std::min(low, n - 2);
  const int64_t high = low + 1;
  // low_idx is a shape-(1,) array, so low/high and w stay float32 arrays (value-based casting of
  // the float64 scalar log_sigma); only t = (1 - w) * low_idx + w * high_idx promotes to float64.
  const float lo = logSigmas[static_cast<size_t>(low)];
  const float hi = logSigmas[static_cast<size_t>(high)];
  float w = (lo - logSigmaF) / (lo - hi);
  w = std::min(std::max(w, 0.0f), 1.0f);
  return static_cast<double>(1.0f - w) * static_cast<double>(low) + static_cast<double>(w) * static_cast<double>(high);
}

std::vector<double> karrasSigmas(double sigmaMin, double sigmaMax, int64_t n) {
  const double rho = 7.0;
  const std::vector<double> ramp = npLinspace(0, 1, n);
  const double minInvRho = std::pow(sigmaMin, 1 / rho);
  const double maxInvRho = std::pow(sigmaMax, 1 / rho);
  std::vector<double> out(ramp.size());
  for (size_t i = 0; i < ramp.size(); ++i) out[i] = std::pow(maxInvRho + ramp[i] * (minInvRho - maxInvRho), rho);
  return out;
}

std::vector<double> toDoubles(const at::Tensor& t) {
  at::Tensor c = t.to(at::kDouble).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

std::vector<float> toFloats(const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous();
  const float* p = c.data_ptr<float>();
  return std::vector<float>(p, p + c.numel());
}

// np.log on a float32 array runs numpy's AVX2-FMA3/AVX512F kernel (simd_log_FLOAT, numpy >= 1.20
// on x86-64), which is not correctly rounded (<= 3.83 ulp): range-reduce to a mantissa in
// [sqrt(1/2), sqrt(2)), a P5/Q5 rational approximation of log(1+y) in fused multiply-adds, then
// + e·ln2. Reproduced here in scalar float32 (same constants, std::fma) so Karras timesteps match.
float npLogFloat32(float xIn) {
  if (std::isnan(xIn)) return xIn;
  if (xIn < 0) return -std::numeric_limits<float>::quiet_NaN();
  if (xIn == 0) return -std::numeric_limits<float>::infinity();
  if (std::isinf(xIn)) return xIn;
  constexpr float kP[6] = {0.000000000000000000000e+00f, 9.999999999999998702752e-01f, 2.112677543073053063722e+00f,
                           1.480000633576506585156e+00f, 3.808837741388407920751e-01f, 2.589979117907922693523e-02f};
  constexpr float kQ[6] = {1.000000000000000000000e+00f, 2.612677543073109236779e+00f, 2.453006071784736363091e+00f,
                           9.864942958519418960339e-01f, 1.546476374983906719538e-01f, 5.875095403124574342950e-03f};
  constexpr float kLn2 = 0.693147180559945309417232121458176568f;
  constexpr float kSqrt1_2 = 0.707106781186547524400844362104849039f;
  float x = xIn;
  float expAdjust = 0;
  if (x < std::numeric_limits<float>::min()) {  // denormal: scale by 2^100 first
    x *= 0x1p100f;
    expAdjust = -100;
  }
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 0x7E) + expAdjust;
  const uint32_t mbits = (bits & 0x7fffffu) | (126u << 23);
  float m;
  std::memcpy(&m, &mbits, sizeof m);  // [0.5, 1)
  if (m <= kSqrt1_2) {
    m = m + m;
    e = e - 1.0f;
  }
  const float y = m - 1.0f;
  float num = std::fma(kP[5], y, kP[4]);
  for (int k = 3; k >= 0; --k) num = std::fma(num, y, kP[k]);
  float den = std::fma(kQ[5], y, kQ[4]);
  for (int k = 3; k >= 0; --k) den = std::fma(den, y, kQ[k]);
  return std::fma(e, kLn2, num / den);
}

std::vector<float> logFloats(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = npLogFloat32(v[i]);
  return out;
}

at::Tensor floatTensor(const std::vector<double>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(at::kFloat));
  float* p = t.data_ptr<float>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
  return t;
}

at::Tensor longTensor(const std::vector<int64_t>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(at::kLong));
  std::copy(v.begin(), v.end(), t.data_ptr<int64_t>());
  return t;
}

std::vector<double> floatSpacedTimesteps(const std::string& spacing, int64_t T, int64_t n, int64_t stepsOffset) {
  std::vector<double> ts;
  if (spacing == "linspace") {
    // np.linspace(0, T - 1, n, dtype=np.float32)[::-1]
    ts = npLinspace(0, static_cast<double>(T - 1), n);
    std::reverse(ts.begin(), ts.end());
    for (auto& v : ts) v = static_cast<float>(v);
  } else if (spacing == "leading") {
    // (np.arange(0, n) * (T // n)).round()[::-1].astype(np.float32) + steps_offset
    const int64_t ratio = T / n;
    for (int64_t i = n - 1; i >= 0; --i)
      ts.push_back(static_cast<float>(static_cast<float>(i * ratio) + static_cast<float>(stepsOffset)));
  } else {  // trailing: np.arange(T, 0, -T / n).round().astype(np.float32) - 1
    for (double v : npArange(static_cast<double>(T), 0, -static_cast<double>(T) / static_cast<double>(n)))
      ts.push_back(static_cast<float>(static_cast<float>(npRound(v)) - 1.0f));
  }
  return ts;
}

// ---- tensors -----------------------------------------------------------------------------------

at::Tensor randnTensor(at::IntArrayRef shape, const runtime::Generators& generator, const at::TensorOptions& options) {
  if (generator.empty()) return at::randn(shape, options);
  return generator.randn(shape, options, "scheduler step");
}

void checkSameShape(const at::Tensor& a, const at::Tensor& b, const char* what) {
  if (!a.defined() || !b.defined()) fail(codes::kInvalidArgument, std::string(what) + ": a tensor argument is undefined");
  if (a.sizes() != b.sizes()) {
    std::ostringstream m;
    m << what << ": shapes differ: " << a.sizes() << " vs " << b.sizes();
    fail(codes::kInvalidArgument, m.str());
  }
  if (!at::isFloatingType(a.scalar_type()) || !at::isFloatingType(b.scalar_type()))
    fail(codes::kInvalidArgument, std::string(what) + ": tensors must be floating point");
}

int64_t integerTimestep(double t, int64_t T, const char* who) {
  if (!(t >= 0 && t < static_cast<double>(T)) || t != std::floor(t))
    fail(codes::kInvalidArgument, std::string(who) + ": timestep " + std::to_string(t) +
                                      " must be an integer in [0, " + std::to_string(T) + ")");
  return static_cast<int64_t>(t);
}

at::Tensor scalarLong(int64_t v) { return at::scalar_tensor(v, at::TensorOptions().dtype(at::kLong)); }

at::Tensor clipSample(const at::Tensor& x, double range) {
  if (x.device().is_cpu() && x.scalar_type() == at::kHalf) return x.to(at::kFloat).clamp(-range, range).to(at::kHalf);
  return x.clamp(-range, range);
}

at::Tensor thresholdSample(const at::Tensor& sampleIn, double ratio, double maxValue) {
  const auto dtype = sampleIn.scalar_type();
  at::Tensor sample = sampleIn;
  if (dtype != at::kFloat && dtype != at::kDouble) sample = sample.to(at::kFloat);
  const auto sizes = sample.sizes().vec();
  const int64_t b = sizes[0];
  sample = sample.reshape({b, -1});                         // [B, C*H*W]
  at::Tensor s = at::quantile(sample.abs(), ratio, 1);      // [B]
  s = at::clamp(s, 1, maxValue).unsqueeze(1);               // [B, 1]
  sample = at::clamp(sample, -s, s) / s;
  return sample.reshape(sizes).to(dtype);
}

at::Tensor ddpmAddNoise(const at::Tensor& alphasCumprod, const at::Tensor& original, const at::Tensor& noise,
                        int64_t t) {
  checkSameShape(original, noise, "addNoise");
  at::Tensor ac = alphasCumprod.to(original.device(), original.scalar_type());
  at::Tensor a = ac.slice(0, t, t + 1);                                     // [1]
  at::Tensor sqrtAlphaProd = unsqueezeTo(a.pow(0.5), original.dim());        // [1, 1, 1, 1]
  at::Tensor sqrtOneMinusAlphaProd = unsqueezeTo(at::rsub(a, 1).pow(0.5), original.dim());
  return sqrtAlphaProd * original + sqrtOneMinusAlphaProd * noise;
}

std::vector<int64_t> ddimSpacedTimesteps(const std::string& spacing, int64_t T, int64_t n, int64_t stepsOffset) {
  std::vector<int64_t> ts;
  if (spacing == "linspace") {
    // np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    for (double v : npLinspace(0, static_cast<double>(T - 1), n)) ts.push_back(static_cast<int64_t>(npRound(v)));
    std::reverse(ts.begin(), ts.end());
  } else if (spacing == "leading") {
    // (np.arange(0, n) * (T // n)).round()[::-1] + steps_offset
    const int64_t ratio = T / n;
    for (int64_t i = n - 1; i >= 0; --i) ts.push_back(i * ratio + stepsOffset);
  } else {  // trailing: np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    for (double v : npArange(static_cast<double>(T), 0, -static_cast<double>(T) / static_cast<double>(n)))
      ts.push_back(static_cast<int64_t>(npRound(v)) - 1);
  }
  return ts;
}

at::Tensor unsqueezeTo(at::Tensor t, int64_t ndim) {
  t = t.flatten();
  while (t.dim() < ndim) t = t.unsqueeze(-1);
  return t;
}

// ---- shared bases ------------------------------------------------------------------------------

double KarrasStyleScheduler::initNoiseSigma() const {
  at::Tensor maxSigma = sigmas_.max();  // float32 0-d
  if (spacing_ == "linspace" || spacing_ == "trailing") return maxSigma.item<double>();
  return (maxSigma.pow(2) + 1).pow(0.5).item<double>();
}

at::Tensor KarrasStyleScheduler::scaleModelInput(const at::Tensor& sample, double timestep) {
  requireTimesteps("scaleModelInput");
  if (!stepIndex_) initStepIndex(timestep);
  at::Tensor sigma = sigmas_[*stepIndex_];
  return sample / (sigma.pow(2) + 1).pow(0.5);
}

int64_t KarrasStyleScheduler::addNoiseIndex(double timestep) const {
  if (!beginIndex_) return indexForTimestep(timestep);
  return stepIndex_ ? *stepIndex_ : *beginIndex_;
}

at::Tensor KarrasStyleScheduler::addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) {
  requireTimesteps("addNoise");
  checkSameShape(original, noise, "addNoise");
  const int64_t i = addNoiseIndex(timestep);
  at::Tensor sigmas = sigmas_.to(original.device(), original.scalar_type());
  at::Tensor sigma = unsqueezeTo(sigmas.slice(0, i, i + 1), original.dim());  // [1, 1, 1, 1]
  return original + noise * sigma;
}

std::pair<at::Tensor, at::Tensor> sigmaToAlphaSigmaT(const at::Tensor& sigma) {
  at::Tensor alphaT = (sigma.pow(2) + 1).pow(0.5).reciprocal();  // python `1 / x` = x.reciprocal() * 1
  at::Tensor sigmaT = sigma * alphaT;
  return {alphaT, sigmaT};
}

at::Tensor alphaSigmaAddNoise(const at::Tensor& sigmasIn, int64_t index, const at::Tensor& original,
                              const at::Tensor& noise) {
  checkSameShape(original, noise, "addNoise");
  at::Tensor sigmas = sigmasIn.to(original.device(), original.scalar_type());
  at::Tensor sigma = unsqueezeTo(sigmas.slice(0, index, index + 1), original.dim());  // [1, 1, 1, 1]
  auto [alphaT, sigmaT] = sigmaToAlphaSigmaT(sigma);
  return alphaT * original + sigmaT * noise;
}

}  // namespace sd::schedulers::detail
