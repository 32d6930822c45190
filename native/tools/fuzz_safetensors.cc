// Fuzz driver for the safetensors reader (io/safetensors: parseSafetensorsHeader, SafetensorsFile),
// after the mutation classes of test/safetensors-fuzz.test.ts. Meant to run under AddressSanitizer:
//
//   cmake -S . -B build-asan -DSD_ASAN=ON -DSD_BUILD_TOOLS=ON && cmake --build build-asan -j2
//   ./build-asan/fuzz_safetensors [--iterations N] [--seed S] file.safetensors...
//
// Every mutated image is copied into an allocation of exactly its size (so any read past the end
// is an ASan report), validated with SafetensorsFile::fromMemory, and every tensor is read through
// SafetensorsFile::tensor. An image must either be refused with E_BAD_CHECKPOINT or read back
// exactly (all data bytes, same checksum as the raw data section). Exit status 1 on any violation.
#include <c10/util/Exception.h>

#include <cctype>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "util/error.h"

namespace {

// a + b without signed overflow (UB): saturates at the long long range. The numbers come
// from sscanf/strtoll on mutated text, which clamp to LLONG_MIN/LLONG_MAX, so a plain
// `a + k` overflows exactly on the hostile inputs the fuzzer plants.
long long saturatingAdd(long long a, long long b) {
  long long out = 0;
  if (__builtin_add_overflow(a, b, &out)) return b > 0 ? LLONG_MAX : LLONG_MIN;
  return out;
}

using Bytes = std::vector<uint8_t>;

Bytes assemble(const std::string& json, const uint8_t* data, size_t dataSize, uint64_t claimed) {
  Bytes out(8 + json.size() + dataSize);
  std::memcpy(out.data(), &claimed, 8);
  std::memcpy(out.data() + 8, json.data(), json.size());
  if (dataSize) std::memcpy(out.data() + 8 + json.size(), data, dataSize);
  return out;
}
Bytes assemble(const std::string& json, const Bytes& data) { return assemble(json, data.data(), data.size(), json.size()); }

/// Header text and data section of an image whose length field is in range.
bool split(const Bytes& b, std::string& text, Bytes& data) {
  if (b.size() < 8) return false;
  uint64_t n;
  std::memcpy(&n, b.data(), 8);
  if (n > b.size() - 8) return false;
  text.assign(reinterpret_cast<const char*>(b.data()) + 8, n);
  data.assign(b.begin() + 8 + static_cast<std::ptrdiff_t>(n), b.end());
  return true;
}

/// A hand-made seed: one tensor of every dtype, a scalar, empty tensors; `pad` false → misaligned data.
Bytes handMade(bool pad) {
  struct E { const char* name; const char* dtype; std::vector<int64_t> shape; size_t elem; };
  const std::vector<E> entries = {
      {"f64", "F64", {3}, 8},  {"f32", "F32", {2, 2}, 4}, {"f16", "F16", {3}, 2},     {"bf16", "BF16", {2}, 2},
      {"e4m3", "F8_E4M3", {5}, 1}, {"e5m2", "F8_E5M2", {1}, 1}, {"i64", "I64", {2}, 8}, {"i32", "I32", {1}, 4},
      {"i16", "I16", {3}, 2},  {"i8", "I8", {2}, 1},      {"u8", "U8", {4}, 1},       {"b", "BOOL", {2}, 1},
      {"scalar", "F32", {}, 4}, {"empty", "F16", {0}, 2}, {"empty2", "I64", {2, 0, 3}, 8}};
  std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t off = 0;
  for (const auto& e : entries) {
    uint64_t n = e.elem;
    std::string shape;
    for (size_t i = 0; i < e.shape.size(); ++i) {
      n *= static_cast<uint64_t>(e.shape[i]);
      shape += (i ? "," : "") + std::to_string(e.shape[i]);
    }
    json += ",\"" + std::string(e.name) + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":[" + shape +
            "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + n) + "]}";
    off += n;
  }
  json += "}";
  if (pad)
    while (json.size() % 8) json += ' ';
  Bytes data(off);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 37 + 11);
  return assemble(json, data);
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}
  size_t below(size_t n) { return n ? std::uniform_int_distribution<size_t>(0, n - 1)(rng_) : 0; }
  bool coin(double p = 0.5) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  template <typename T> const T& pick(const std::vector<T>& v) { return v[below(v.size())]; }

  Bytes mutate(Bytes b) {
    const size_t rounds = 1 + below(3);
    for (size_t k = 0; k < rounds; ++k) {
      switch (below(11)) {
        case 0: b.resize(below(b.size() + 1)); break;  // truncation
        case 1:  // bit flip in the length
          if (b.size() >= 8) b[below(8)] ^= static_cast<uint8_t>(1u << below(8));
          break;
        case 2: {  // hostile lengths
          if (b.size() < 8) break;
          uint64_t n;
          std::memcpy(&n, b.data(), 8);
          const std::vector<uint64_t> v = {0, 1, 2, n - 1, n + 1, n + 8, b.size() - 8, b.size(), 1ull << 32,
                                           100ull << 20, 1ull << 63, ~0ull, ~0ull - 7};
          n = pick(v);
          std::memcpy(b.data(), &n, 8);
          break;
        }
        case 3:
        case 4: {  // bits / bytes in the header
          std::string text;
          Bytes data;
          if (!split(b, text, data) || text.empty()) break;
          const char* special = "{}[]\",:-0123456789eE.\\u";
          for (size_t f = 0, nf = 1 + below(4); f < nf; ++f) {
            size_t i = 8 + below(text.size());
            if (coin()) b[i] ^= static_cast<uint8_t>(1u << below(8));
            else b[i] = coin() ? static_cast<uint8_t>(below(256)) : static_cast<uint8_t>(special[below(std::strlen(special))]);
          }
          break;
        }
        case 5: {  // data bytes (image stays valid)
          std::string text;
          Bytes data;
          if (!split(b, text, data) || data.empty()) break;
          b[8 + text.size() + below(data.size())] ^= static_cast<uint8_t>(1u << below(8));
          break;
        }
        case 6: b.resize(b.size() + 1 + below(16), static_cast<uint8_t>(below(256))); break;  // trailing bytes
        default: {  // header text edits, re-encoded with a (usually) consistent length
          std::string text;
          Bytes data;
          if (!split(b, text, data)) break;
          text = editHeader(text);
          uint64_t claimed = text.size();
          if (coin(0.1)) claimed += pick(std::vector<uint64_t>{1, 7, ~0ull});
          b = assemble(text, data.data(), data.size(), claimed);
          break;
        }
      }
    }
    return b;
  }

 private:
  /// Positions of number literals in `s`.
  std::vector<std::pair<size_t, size_t>> numbers(const std::string& s) {
    std::vector<std::pair<size_t, size_t>> out;
    bool inString = false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '"' && (i == 0 || s[i - 1] != '\\')) inString = !inString;
      if (inString) continue;
      if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
        size_t j = i + 1;
        while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.' || s[j] == 'e' ||
                                s[j] == 'E' || s[j] == '+' || s[j] == '-'))
          ++j;
        out.emplace_back(i, j - i);
        i = j - 1;
      }
    }
    return out;
  }

  std::string editHeader(std::string s) {
    static const std::vector<std::string> hostileNumbers = {
        "-1", "-0", "0", "1", "1.5", "0.0", "1e2", "1e400", "-1e400", "00", "01", "4294967296",
        "9007199254740993", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "18446744073709551615", "18446744073709551616", "99999999999999999999999999999", "2.5e-8"};
    static const std::vector<std::string> dtypes = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64",
                                                    "I32", "I16", "I8",  "U8",  "BOOL", "F7", "", "f32", "U64"};
    static const std::vector<std::string> garbage = {std::string(1, '\0'), "\x01", "\xff", "\xef\xbf\xbd", "\\", "\"",
                                                     "{", "}", "[", "]", ",", ":", "\\u", "\\ud800", "\\udc00x",
                                                     "null", "NaN", "Infinity", "\xc3", "\xf0\x9f"};
    switch (below(9)) {
      case 8: {  // self-consistent lie: a whole range shifted (holes, overlaps, past the end)
        size_t at = s.find("\"data_offsets\":[");
        for (size_t skip = below(8); skip && at != std::string::npos; --skip) {
          size_t next = s.find("\"data_offsets\":[", at + 1);
          if (next == std::string::npos) break;
          at = next;
        }
        if (at == std::string::npos) break;
        at += 16;
        size_t end = s.find(']', at);
        if (end == std::string::npos) break;
        long long a = 0, b = 0;
        if (std::sscanf(s.substr(at, end - at).c_str(), "%lld,%lld", &a, &b) != 2) break;
        const long long k = pick(std::vector<long long>{-8, -4, -2, -1, 1, 2, 4, 8});
        s.replace(at, end - at, std::to_string(saturatingAdd(a, k)) + "," + std::to_string(saturatingAdd(b, k)));
        break;
      }
      case 0:
      case 1: {  // offset / shape lies: a number replaced by a nearby or hostile one
        auto nums = numbers(s);
        if (nums.empty()) break;
        auto [at, len] = pick(nums);
        std::string repl;
        if (coin()) {
          long long v = std::strtoll(s.substr(at, len).c_str(), nullptr, 10);
          repl = std::to_string(saturatingAdd(v, static_cast<long long>(pick(std::vector<int>{-8, -4, -2, -1, 1, 2, 4, 8}))));
        } else {
          repl = pick(hostileNumbers);
        }
        s.replace(at, len, repl);
        break;
      }
      case 2: {  // dtype swap
        size_t at = s.find("\"dtype\":\"");
        for (size_t skip = below(8); skip && at != std::string::npos; --skip) {
          size_t next = s.find("\"dtype\":\"", at + 1);
          if (next == std::string::npos) break;
          at = next;
        }
        if (at == std::string::npos) break;
        at += 9;
        size_t end = s.find('"', at);
        if (end != std::string::npos) s.replace(at, end - at, pick(dtypes));
        break;
      }
      case 3: {  // duplicate / overlapping entries: copy one entry under another or the same name
        size_t open = s.find("\":{\"");
        if (open == std::string::npos) break;
        size_t keyStart = s.rfind('"', open - 1);
        size_t close = s.find('}', open);
        if (keyStart == std::string::npos || close == std::string::npos) break;
        std::string entry = s.substr(keyStart, close + 1 - keyStart);
        if (coin()) entry.replace(0, open - keyStart + 1, "\"dup" + std::to_string(below(1000)) + "\"");
        size_t brace = s.find('{');
        if (brace != std::string::npos) s.insert(brace + 1, entry + ",");
        break;
      }
      case 4: {  // deep nesting
        size_t d = 1 + below(200);
        if (coin()) {
          s = std::string(d, '[') + s + std::string(d, ']');
        } else {
          auto nums = numbers(s);
          if (nums.empty()) break;
          auto [at, len] = pick(nums);
          s.replace(at, len, std::string(d, '[') + "0" + std::string(d, ']'));
        }
        break;
      }
      case 5: {  // a field renamed or removed
        static const std::vector<std::string> fields = {"\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\""};
        const std::string& f = pick(fields);
        size_t at = s.find(f);
        if (at != std::string::npos) s.replace(at, f.size(), coin() ? "\"x\"" : "\"__metadata__\"");
        break;
      }
      case 6: {  // a value replaced by a wrong type
        size_t at = s.find(pick(std::vector<std::string>{"\"shape\":", "\"data_offsets\":", "\"dtype\":"}));
        if (at == std::string::npos) break;
        at = s.find(':', at) + 1;
        size_t end = at;
        int depth = 0;
        for (; end < s.size(); ++end) {
          if (s[end] == '[' || s[end] == '{') ++depth;
          if (s[end] == ']' || s[end] == '}') {
            if (depth == 0) break;
            --depth;
          }
          if (s[end] == ',' && depth == 0) break;
        }
        s.replace(at, end - at, pick(std::vector<std::string>{"null", "1", "\"s\"", "[]", "{}", "[0]", "[0,0,0]",
                                                              "[-4,0]", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]"}));
        break;
      }
      default: {  // garbage inserted or overwritten
        const std::string& g = pick(garbage);
        size_t at = below(s.size() + 1);
        if (coin()) s.insert(at, g);
        else s.replace(at, std::min(g.size(), s.size() - at), g);
        break;
      }
    }
    return s;
  }

  std::mt19937_64 rng_;
};

/// Runs one image; returns "" or a description of the violation.
std::string runOne(const Bytes& image, bool& accepted) {
  accepted = false;
  // Exactly-sized allocation: ASan sees any read past the end.
  std::unique_ptr<uint8_t[]> buf(new uint8_t[image.size() ? image.size() : 1]);
  if (!image.empty()) std::memcpy(buf.get(), image.data(), image.size());
  try {
    auto file = sd::io::SafetensorsFile::fromMemory(nullptr, buf.get(), image.size(), "<fuzz>");
    uint64_t bytes = 0, sum = 0;
    for (const auto& info : file->header().tensors) {
      at::Tensor t = file->tensor(info);
      const uint64_t n = static_cast<uint64_t>(t.numel()) * t.element_size();
      if (n != info.end - info.begin) return "tensor \"" + info.name + "\" read back with a different size";
      const uint8_t* p = n ? static_cast<const uint8_t*>(t.data_ptr()) : nullptr;
      for (uint64_t i = 0; i < n; ++i) sum += p[i];
      bytes += n;
    }
    // Independent check over the raw data section.
    uint64_t headerSize;
    std::memcpy(&headerSize, buf.get(), 8);
    const uint64_t start = 8 + headerSize;
    uint64_t rawSum = 0;
    for (uint64_t i = start; i < image.size(); ++i) rawSum += buf[i];
    if (bytes != image.size() - start) return "read " + std::to_string(bytes) + " of " + std::to_string(image.size() - start) + " data bytes";
    if (sum != rawSum) return "byte sum differs from the raw data section";
    accepted = true;
    return "";
  } catch (const sd::SdException& e) {
    if (e.code() != sd::codes::kBadCheckpoint) return "SdException with code " + e.code() + ": " + e.what();
    return "";
  } catch (const c10::Error& e) {
    return std::string("c10::Error: ") + e.what_without_backtrace();
  } catch (const std::exception& e) {
    return std::string("std::exception: ") + e.what();
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t iterations = 100000, seed = 12345;
  std::vector<std::pair<std::string, Bytes>> seeds;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc) {
      iterations = std::stoull(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::stoull(argv[++i]);
    } else {
      std::ifstream in(a, std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "cannot read %s\n", a.c_str());
        return 2;
      }
      seeds.emplace_back(a, Bytes(std::istreambuf_iterator<char>(in), {}));
    }
  }
  seeds.emplace_back("<hand-made, padded>", handMade(true));
  seeds.emplace_back("<hand-made, unpadded>", handMade(false));

  // Seeds must be valid.
  for (const auto& [name, bytes] : seeds) {
    bool ok;
    std::string v = runOne(bytes, ok);
    if (!ok) {
      std::fprintf(stderr, "seed %s is not a valid safetensors image %s\n", name.c_str(), v.c_str());
      return 2;
    }
  }

  Mutator m(seed);
  uint64_t accepted = 0, refused = 0, failures = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t it = 0; it < iterations; ++it) {
    const auto& [name, base] = seeds[it % seeds.size()];
    Bytes image = m.mutate(base);
    bool ok;
    std::string v = runOne(image, ok);
    (ok ? accepted : refused)++;
    if (!v.empty()) {
      if (failures++ < 20) std::fprintf(stderr, "iteration %llu (%s): %s\n", static_cast<unsigned long long>(it), name.c_str(), v.c_str());
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("fuzz_safetensors: %llu iterations over %zu seeds (seed %llu): %llu accepted, %llu refused, %llu violations, %.1f s\n",
              static_cast<unsigned long long>(iterations), seeds.size(), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(refused),
              static_cast<unsigned long long>(failures), s);
  return failures ? 1 : 0;
}
