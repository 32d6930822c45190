// A small strict JSON reader (RFC 8259) for safetensors headers and diffusers config files.
// Strict on purpose: it runs on untrusted bytes (file headers), so depth and sizes are bounded,
// duplicate object keys are refused and every error is an SdException naming `where`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sd {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Json() = default;
  /// `maxValues` > 0 bounds the number of values (for untrusted input); exceeding it is an error.
  static Json parse(std::string_view text, const std::string& where, uint64_t maxValues = 0);
  static Json parseFile(const std::string& path);  // E_MODEL_NOT_FOUND if missing, E_BAD_CONFIG if malformed or not a regular file (FIFO, socket, device)

  Type type() const { return type_; }
  bool isNull() const { return type_ == Type::Null; }
  bool isBool() const { return type_ == Type::Bool; }
  bool isNumber() const { return type_ == Type::Number; }
  bool isString() const { return type_ == Type::String; }
  bool isArray() const { return type_ == Type::Array; }
  bool isObject() const { return type_ == Type::Object; }

  bool boolean() const { return bool_; }
  double number() const { return number_; }
  /// True when the literal had no fraction or exponent and fits in int64.
  bool isInteger() const { return type_ == Type::Number && isInteger_; }
  int64_t integer() const { return integer_; }
  const std::string& string() const { return string_; }
  const std::vector<Json>& array() const { return array_; }
  const std::map<std::string, Json>& object() const { return object_; }

  /// Object member or nullptr.
  const Json* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }

  /// Serialises back to compact JSON (object keys sorted).
  std::string dump() const;

  // Builders (used by writers and tests).
  static Json makeNull() { return Json(); }
  static Json makeBool(bool b);
  static Json makeNumber(double v);
  static Json makeInteger(int64_t v);
  static Json makeString(std::string s);
  static Json makeArray(std::vector<Json> items);
  static Json makeObject(std::map<std::string, Json> members);

 private:
  friend class JsonParser;
  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0;
  bool isInteger_ = false;
  int64_t integer_ = 0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
};

}  // namespace sd
