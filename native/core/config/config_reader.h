// Field-by-field reading of a diffusers/transformers config.json: required fields are an
// E_BAD_CONFIG naming the file and field; unknown fields are ignored; defaults are those of
// the diffusers class being ported (documented at each call site).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util/json.h"

namespace sd {

class ConfigReader {
 public:
  ConfigReader(Json json, std::string file) : json_(std::move(json)), file_(std::move(file)) {}
  /// Parses `path` (E_MODEL_NOT_FOUND when missing).
  static ConfigReader fromFile(const std::string& path);

  bool has(const std::string& key) const;  // present and not null
  int64_t requireInt(const std::string& key) const;
  int64_t getInt(const std::string& key, int64_t fallback) const;
  double requireDouble(const std::string& key) const;
  double getDouble(const std::string& key, double fallback) const;
  bool getBool(const std::string& key, bool fallback) const;
  std::string requireString(const std::string& key) const;
  std::string getString(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> requireIntList(const std::string& key) const;
  std::vector<std::string> requireStringList(const std::string& key) const;
  /// An int or a list of ints: a scalar is repeated `n` times (e.g. attention_head_dim).
  std::vector<int64_t> intOrList(const std::string& key, size_t n, std::optional<int64_t> fallback = std::nullopt) const;
  std::optional<std::vector<double>> getDoubleList(const std::string& key) const;

  // ---- range-checked getters: E_BAD_CONFIG "field "key" must be an integer in [min, max], got v" ----
  /// requireInt() within [min, max].
  int64_t requireIntIn(const std::string& key, int64_t min, int64_t max) const;
  /// getInt() within [min, max] (the fallback is not checked).
  int64_t getIntIn(const std::string& key, int64_t fallback, int64_t min, int64_t max) const;
  /// getDouble() within [min, max] (a finite number; the fallback is not checked).
  double getDoubleIn(const std::string& key, double fallback, double min, double max) const;
  /// E_BAD_CONFIG unless every entry of `values` (read from `key`) lies in [min, max].
  void checkIn(const std::string& key, const std::vector<int64_t>& values, int64_t min, int64_t max) const;
  /// E_BAD_CONFIG unless `v` (read from `key`) lies in [min, max].
  void checkIn(const std::string& key, int64_t v, int64_t min, int64_t max) const;

  // ---- caps on sizes, far above any released model, that keep a hostile or mistyped config
  // from allocating unbounded memory or looping for ever before its weights are checked ----
  static constexpr int64_t kMaxChannels = 65536;          // channels, hidden sizes, embedding dims
  static constexpr int64_t kMaxLayers = 1024;             // layers per block / encoder layers
  static constexpr int64_t kMaxVocab = 10000000;          // token vocabulary
  static constexpr int64_t kMaxPositions = 1048576;       // position embeddings, sample sizes
  static constexpr int64_t kMaxKernel = 31;               // convolution kernel sizes

  const Json& json() const { return json_; }
  const std::string& file() const { return file_; }
  [[noreturn]] void error(const std::string& key, const std::string& what) const;

 private:
  const Json* get(const std::string& key) const;
  Json json_;
  std::string file_;
};

}  // namespace sd
