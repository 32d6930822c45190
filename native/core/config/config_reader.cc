// Strict reading of diffusers config.json fields.
#include "config/config_reader.h"

#include <cmath>

#include "util/error.h"

namespace sd {

namespace {
// Doubles above 2^53 are not exact integers, and casting one past INT64_MAX is undefined.
constexpr double kMaxExactInt = 9007199254740992.0;
std::string range(int64_t min, int64_t max) { return "[" + std::to_string(min) + ", " + std::to_string(max) + "]"; }
}  // namespace

ConfigReader ConfigReader::fromFile(const std::string& path) {
  Json j = Json::parseFile(path);
  if (!j.isObject()) fail(codes::kBadConfig, path + ": expected a JSON object");
  return ConfigReader(std::move(j), path);
}

void ConfigReader::error(const std::string& key, const std::string& what) const {
  fail(codes::kBadConfig, file_ + ": field \"" + key + "\" " + what);
}

const Json* ConfigReader::get(const std::string& key) const {
  const Json* v = json_.find(key);
  return (v && !v->isNull()) ? v : nullptr;
}

bool ConfigReader::has(const std::string& key) const { return get(key) != nullptr; }

int64_t ConfigReader::requireInt(const std::string& key) const {
  const Json* v = get(key);
  if (!v) error(key, "is required but missing");
  if (!v->isNumber() || v->number() != std::floor(v->number())) error(key, "must be an integer");
  if (std::fabs(v->number()) > kMaxExactInt) error(key, "must be an integer of magnitude at most 2^53");
  return static_cast<int64_t>(v->number());
}
int64_t ConfigReader::getInt(const std::string& key, int64_t fallback) const {
  return has(key) ? requireInt(key) : fallback;
}
double ConfigReader::requireDouble(const std::string& key) const {
  const Json* v = get(key);
  if (!v) error(key, "is required but missing");
  if (v->isString()) {  // cases.json-style "-Infinity"
    if (v->string() == "-Infinity") return -INFINITY;
    if (v->string() == "Infinity") return INFINITY;
  }
  if (!v->isNumber()) error(key, "must be a number");
  return v->number();
}
double ConfigReader::getDouble(const std::string& key, double fallback) const {
  return has(key) ? requireDouble(key) : fallback;
}
bool ConfigReader::getBool(const std::string& key, bool fallback) const {
  const Json* v = get(key);
  if (!v) return fallback;
  if (!v->isBool()) error(key, "must be true or false");
  return v->boolean();
}
std::string ConfigReader::requireString(const std::string& key) const {
  const Json* v = get(key);
  if (!v) error(key, "is required but missing");
  if (!v->isString()) error(key, "must be a string");
  return v->string();
}
std::string ConfigReader::getString(const std::string& key, const std::string& fallback) const {
  return has(key) ? requireString(key) : fallback;
}
std::vector<int64_t> ConfigReader::requireIntList(const std::string& key) const {
  const Json* v = get(key);
  if (!v) error(key, "is required but missing");
  if (!v->isArray()) error(key, "must be a list of integers");
  std::vector<int64_t> out;
  for (const auto& e : v->array()) {
    if (!e.isNumber() || e.number() != std::floor(e.number())) error(key, "must be a list of integers");
    if (std::fabs(e.number()) > kMaxExactInt) error(key, "must hold integers of magnitude at most 2^53");
    out.push_back(static_cast<int64_t>(e.number()));
  }
  return out;
}
std::vector<std::string> ConfigReader::requireStringList(const std::string& key) const {
  const Json* v = get(key);
  if (!v) error(key, "is required but missing");
  if (!v->isArray()) error(key, "must be a list of strings");
  std::vector<std::string> out;
  for (const auto& e : v->array()) {
    if (!e.isString()) error(key, "must be a list of strings");
    out.push_back(e.string());
  }
  return out;
}
std::vector<int64_t> ConfigReader::intOrList(const std::string& key, size_t n, std::optional<int64_t> fallback) const {
  const Json* v = get(key);
  if (!v) {
    if (!fallback) error(key, "is required but missing");
    return std::vector<int64_t>(n, *fallback);
  }
  if (v->isNumber()) return std::vector<int64_t>(n, requireInt(key));
  std::vector<int64_t> list = requireIntList(key);
  if (list.size() != n) error(key, "has " + std::to_string(list.size()) + " entries, expected " + std::to_string(n));
  return list;
}
std::optional<std::vector<double>> ConfigReader::getDoubleList(const std::string& key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->isArray()) error(key, "must be a list of numbers");
  std::vector<double> out;
  for (const auto& e : v->array()) {
    if (!e.isNumber()) error(key, "must be a list of numbers");
    out.push_back(e.number());
  }
  return out;
}

int64_t ConfigReader::requireIntIn(const std::string& key, int64_t min, int64_t max) const {
  const int64_t v = requireInt(key);
  checkIn(key, v, min, max);
  return v;
}
int64_t ConfigReader::getIntIn(const std::string& key, int64_t fallback, int64_t min, int64_t max) const {
  return has(key) ? requireIntIn(key, min, max) : fallback;
}
double ConfigReader::getDoubleIn(const std::string& key, double fallback, double min, double max) const {
  if (!has(key)) return fallback;
  const double v = requireDouble(key);
  if (!std::isfinite(v) || v < min || v > max)
    error(key, "must be a number in [" + Json::makeNumber(min).dump() + ", " + Json::makeNumber(max).dump() +
                   "], got " + Json::makeNumber(v).dump());
  return v;
}
void ConfigReader::checkIn(const std::string& key, int64_t v, int64_t min, int64_t max) const {
  if (v < min || v > max) error(key, "must be an integer in " + range(min, max) + ", got " + std::to_string(v));
}
void ConfigReader::checkIn(const std::string& key, const std::vector<int64_t>& values, int64_t min,
                           int64_t max) const {
  for (int64_t v : values)
    if (v < min || v > max) error(key, "must hold integers in " + range(min, max) + ", got " + std::to_string(v));
}

}  // namespace sd
