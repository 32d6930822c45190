// Strict JSON reader/writer (RFC 8259), bounded for untrusted input.
#include "util/json.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "util/error.h"
#include "util/strings.h"

namespace sd {

namespace {
constexpr int kMaxDepth = 64;
}

class JsonParser {
 public:
  JsonParser(std::string_view text, const std::string& where, uint64_t maxValues = 0)
      : s_(text), where_(where), maxValues_(maxValues) {}

  Json parseDocument() {
    skipWs();
    Json v = parseValue(0);
    skipWs();
    if (pos_ != s_.size()) error("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(codes::kBadConfig, where_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }
  void skipWs() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool consume(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) == lit) {
      pos_ += lit.size();
      return true;
    }
    return false;
  }
  Json parseValue(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth));
    if (maxValues_ && ++values_ > maxValues_) error("more than " + std::to_string(maxValues_) + " values");
    if (pos_ >= s_.size()) error("unexpected end of input");
    char c = s_[pos_];
    if (c == '{') return parseObject(depth);
    if (c == '[') return parseArray(depth);
    if (c == '"') return Json::makeString(parseString());
    if (consume("true")) return Json::makeBool(true);
    if (consume("false")) return Json::makeBool(false);
    if (consume("null")) return Json();
    if (c == '-' || (c >= '0' && c <= '9')) return parseNumber();
    error(std::string("unexpected character '") + (c >= 32 && c < 127 ? std::string(1, c) : "?") + "'");
  }
  Json parseObject(int depth) {
    ++pos_;  // {
    std::map<std::string, Json> members;
    skipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return Json::makeObject(std::move(members));
    }
    while (true) {
      skipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key");
      std::string key = parseString();
      skipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') error("expected ':'");
      ++pos_;
      skipWs();
      Json value = parseValue(depth + 1);
      if (!members.emplace(key, std::move(value)).second) error("duplicate key \"" + key + "\"");
      skipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return Json::makeObject(std::move(members));
      }
      error("expected ',' or '}'");
    }
  }
  Json parseArray(int depth) {
    ++pos_;  // [
    std::vector<Json> items;
    skipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return Json::makeArray(std::move(items));
    }
    while (true) {
      skipWs();
      items.push_back(parseValue(depth + 1));
      skipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return Json::makeArray(std::move(items));
      }
      error("expected ',' or ']'");
    }
  }
  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t parseHex4() {
    if (pos_ + 4 > s_.size()) error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else error("bad hex digit in \\u escape");
    }
    return v;
  }
  std::string parseString() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error("unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[pos_++]);
      if (c == '"') return out;
      if (c < 0x20) error("control character in string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parseHex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!consume("\\u")) error("lone high surrogate");
            uint32_t lo = parseHex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            error("lone low surrogate");
          }
          appendUtf8(out, cp);
          break;
        }
        default: error("bad escape");
      }
    }
  }
  Json parseNumber() {
    size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size()) error("truncated number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else if (s_[pos_] >= '1' && s_[pos_] <= '9') {
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    } else {
      error("bad number");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) error("bad fraction");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) error("bad exponent");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    std::string lit(s_.substr(start, pos_ - start));
    Json v;
    v.type_ = Json::Type::Number;
    v.number_ = std::strtod(lit.c_str(), nullptr);
    if (integral && lit.size() <= 20) {
      errno = 0;
      char* end = nullptr;
      long long iv = std::strtoll(lit.c_str(), &end, 10);
      if (errno == 0 && end && *end == '\0') {
        v.isInteger_ = true;
        v.integer_ = iv;
      }
    }
    return v;
  }

  std::string_view s_;
  const std::string& where_;
  size_t pos_ = 0;
  uint64_t maxValues_ = 0;  // 0: unbounded
  uint64_t values_ = 0;
};

Json Json::parse(std::string_view text, const std::string& where, uint64_t maxValues) {
  return JsonParser(text, where, maxValues).parseDocument();
}

Json Json::parseFile(const std::string& path) {
  // A FIFO, socket or device would block the read or never end: only regular files (and
  // directories, whose read fails below as before) are opened.
  util::refuseSpecialFile(path, codes::kBadConfig);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(codes::kModelNotFound, "cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

const Json* Json::find(const std::string& key) const {
  if (type_ != Type::Object) return nullptr;
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &it->second;
}

Json Json::makeBool(bool b) {
  Json j;
  j.type_ = Type::Bool;
  j.bool_ = b;
  return j;
}
Json Json::makeNumber(double v) {
  Json j;
  j.type_ = Type::Number;
  j.number_ = v;
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.007199254740992e15) {
    j.isInteger_ = true;
    j.integer_ = static_cast<int64_t>(v);
  }
  return j;
}
Json Json::makeInteger(int64_t v) {
  Json j;
  j.type_ = Type::Number;
  j.number_ = static_cast<double>(v);
  j.isInteger_ = true;
  j.integer_ = v;
  return j;
}
Json Json::makeString(std::string s) {
  Json j;
  j.type_ = Type::String;
  j.string_ = std::move(s);
  return j;
}
Json Json::makeArray(std::vector<Json> items) {
  Json j;
  j.type_ = Type::Array;
  j.array_ = std::move(items);
  return j;
}
Json Json::makeObject(std::map<std::string, Json> members) {
  Json j;
  j.type_ = Type::Object;
  j.object_ = std::move(members);
  return j;
}

namespace {
void dumpString(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
void dumpTo(std::string& out, const Json& j) {
  switch (j.type()) {
    case Json::Type::Null: out += "null"; break;
    case Json::Type::Bool: out += j.boolean() ? "true" : "false"; break;
    case Json::Type::Number:
      if (j.isInteger()) {
        out += std::to_string(j.integer());
      } else if (!std::isfinite(j.number())) {
        out += "null";
      } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", j.number());
        out += buf;
        // a float stays a float (as Python's json writes it): "-0" would re-parse as the integer 0
        // and lose the sign, "1" as an integer (found by fuzz_parsers' json round trip)
        if (std::strpbrk(buf, ".eE") == nullptr) out += ".0";
      }
      break;
    case Json::Type::String: dumpString(out, j.string()); break;
    case Json::Type::Array: {
      out += '[';
      bool first = true;
      for (const auto& v : j.array()) {
        if (!first) out += ',';
        first = false;
        dumpTo(out, v);
      }
      out += ']';
      break;
    }
    case Json::Type::Object: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : j.object()) {
        if (!first) out += ',';
        first = false;
        dumpString(out, k);
        out += ':';
        dumpTo(out, v);
      }
      out += '}';
      break;
    }
  }
}
}  // namespace

std::string Json::dump() const {
  std::string out;
  dumpTo(out, *this);
  return out;
}

}  // namespace sd
