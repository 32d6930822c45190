// safetensors format reader/writer, following the format spec of huggingface/safetensors.
#include "io/safetensors.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "util/error.h"
#include "util/json.h"
#include "util/strings.h"
#include "util/torch_compat.h"

namespace sd::io {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors is little-endian; so is every supported host");

namespace {

struct DTypeEntry {
  const char* name;
  StDType type;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {"F64", StDType::F64, 8},         {"F32", StDType::F32, 4},    {"F16", StDType::F16, 2},
    {"BF16", StDType::BF16, 2},       {"F8_E4M3", StDType::F8_E4M3, 1}, {"F8_E5M2", StDType::F8_E5M2, 1},
    {"I64", StDType::I64, 8},         {"I32", StDType::I32, 4},    {"I16", StDType::I16, 2},
    {"I8", StDType::I8, 1},           {"U8", StDType::U8, 1},      {"BOOL", StDType::BOOL, 1},
};

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  fail(codes::kBadCheckpoint, where + ": not a valid safetensors file: " + what);
}

bool mulOverflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

const char* dtypeName(StDType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.name;
  return "?";
}

size_t dtypeSize(StDType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.size;
  return 0;
}

SafetensorsHeader parseSafetensorsHeader(const uint8_t* data, uint64_t size, const std::string& where) {
  if (size < 8) bad(where, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  if (n > kMaxHeaderSize) bad(where, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    bad(where, "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                   " bytes): the file is truncated or not safetensors");
  if (n < 2) bad(where, "header length " + std::to_string(n) + " is too small for a JSON object");

  std::string_view text(reinterpret_cast<const char*>(data + 8), n);
  Json root;
  try {
    root = Json::parse(text, where + " (header)", kMaxHeaderValues);
  } catch (const SdException& e) {
    fail(codes::kBadCheckpoint, e.what());
  }
  if (!root.isObject()) bad(where, "header is not a JSON object");

  SafetensorsHeader h;
  h.headerSize = n;
  h.dataSize = size - 8 - n;
  for (const auto& [name, entry] : root.object()) {
    if (name == "__metadata__") {
      if (!entry.isObject()) bad(where, "__metadata__ is not an object");
      for (const auto& [k, v] : entry.object()) {
        if (!v.isString()) bad(where, "__metadata__[\"" + k + "\"] is not a string");
        h.metadata[k] = v.string();
      }
      continue;
    }
    const std::string at = "tensor \"" + name + "\"";
    if (!entry.isObject()) bad(where, at + " is not an object");
    const Json* dt = entry.find("dtype");
    const Json* shape = entry.find("shape");
    const Json* offsets = entry.find("data_offsets");
    if (!dt || !dt->isString()) bad(where, at + " has no string \"dtype\"");
    if (!shape || !shape->isArray()) bad(where, at + " has no \"shape\" array");
    if (!offsets || !offsets->isArray() || offsets->array().size() != 2)
      bad(where, at + " has no \"data_offsets\" [begin, end]");

    TensorInfo info;
    info.name = name;
    bool known = false;
    for (const auto& e : kDTypes) {
      if (dt->string() == e.name) {
        info.dtype = e.type;
        known = true;
      }
    }
    if (!known) bad(where, at + " has unknown dtype \"" + dt->string() + "\"");
    if (shape->array().size() > 16) bad(where, at + " has more than 16 dimensions");
    uint64_t elems = 1;
    for (const auto& d : shape->array()) {
      if (!d.isInteger() || d.integer() < 0) bad(where, at + " has a shape entry that is not a non-negative integer");
      info.shape.push_back(d.integer());
      if (mulOverflows(elems, static_cast<uint64_t>(d.integer()), &elems)) bad(where, at + " shape overflows");
    }
    for (const auto& o : offsets->array())
      if (!o.isInteger() || o.integer() < 0) bad(where, at + " has an offset that is not a non-negative integer");
    info.begin = static_cast<uint64_t>(offsets->array()[0].integer());
    info.end = static_cast<uint64_t>(offsets->array()[1].integer());
    if (info.begin > info.end) bad(where, at + " has data_offsets with begin > end");
    if (info.end > h.dataSize)
      bad(where, at + " ends at byte " + std::to_string(info.end) + " of a data section of " +
                     std::to_string(h.dataSize) + " bytes (truncated file or lying header)");
    uint64_t bytes = 0;
    if (mulOverflows(elems, dtypeSize(info.dtype), &bytes)) bad(where, at + " byte size overflows");
    if (bytes != info.end - info.begin)
      bad(where, at + " shape needs " + std::to_string(bytes) + " bytes but its range holds " +
                     std::to_string(info.end - info.begin));
    h.tensors.push_back(std::move(info));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& t : h.tensors) {
    if (t.begin < cursor) bad(where, "tensor \"" + t.name + "\" overlaps the tensor before it");
    if (t.begin > cursor) bad(where, "hole in the data section before tensor \"" + t.name + "\"");
    cursor = t.end;
  }
  if (cursor != h.dataSize)
    bad(where, "data section has " + std::to_string(h.dataSize - cursor) + " bytes that no tensor describes");
  return h;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  // Only regular files: a FIFO would block open()/read() forever, a device or socket is no
  // checkpoint. Checked before opening (stat() never blocks), and O_NONBLOCK covers a path
  // swapped for a FIFO in between (it is a no-op on regular files); fstat() confirms.
  const std::string kind = util::nonRegularKind(path);
  if (kind == "a directory") fail(codes::kModelNotFound, path + " is not a regular file");
  if (!kind.empty()) fail(codes::kBadCheckpoint, path + " is " + kind + ", not a regular file; refusing to open it");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(codes::kModelNotFound, "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const bool dir = S_ISDIR(st.st_mode);
    ::close(fd);
    fail(dir ? codes::kModelNotFound : codes::kBadCheckpoint, path + " is not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  void* addr = nullptr;
  if (size > 0) {
    // MAP_PRIVATE + PROT_WRITE: copy-on-write pages, so an in-place op on a weight never
    // reaches the file and never faults.
    addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(codes::kBadCheckpoint, "cannot map " + path + ": " + std::strerror(err));
    }
  }
  ::close(fd);
  std::shared_ptr<void> mapping(addr, [size](void* p) {
    if (p) ::munmap(p, size);
  });
  return fromMemory(std::move(mapping), static_cast<const uint8_t*>(addr), size, path);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::fromMemory(std::shared_ptr<void> owner, const uint8_t* data,
                                                             uint64_t size, const std::string& where) {
  if (!data && size > 0) fail(codes::kInvalidArgument, where + ": null data");
  auto file = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = where;
  file->header_ = parseSafetensorsHeader(data, size, where);
  file->mapping_ = std::move(owner);
  file->base_ = data + 8 + file->header_.headerSize;
  for (size_t i = 0; i < file->header_.tensors.size(); ++i) file->index_[file->header_.tensors[i].name] = i;
  return file;
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

at::ScalarType toScalarType(StDType t) {
  switch (t) {
    case StDType::F64: return at::kDouble;
    case StDType::F32: return at::kFloat;
    case StDType::F16: return at::kHalf;
    case StDType::BF16: return at::kBFloat16;
#if defined(SD_HAVE_FLOAT8)
    case StDType::F8_E4M3: return at::kFloat8_e4m3fn;
    case StDType::F8_E5M2: return at::kFloat8_e5m2;
#else
    case StDType::F8_E4M3: return at::kByte;
    case StDType::F8_E5M2: return at::kByte;
#endif
    case StDType::I64: return at::kLong;
    case StDType::I32: return at::kInt;
    case StDType::I16: return at::kShort;
    case StDType::I8: return at::kChar;
    case StDType::U8: return at::kByte;
    case StDType::BOOL: return at::kBool;
  }
  return at::kByte;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) fail(codes::kBadCheckpoint, path_ + ": no tensor named \"" + name + "\"");
  return tensor(*info);
}

at::Tensor SafetensorsFile::tensor(const TensorInfo& info) const {
  const auto opts = at::TensorOptions().dtype(toScalarType(info.dtype)).device(at::kCPU);
  const size_t elem = dtypeSize(info.dtype);
  uint8_t* ptr = const_cast<uint8_t*>(base_ + info.begin);
  if (info.end == info.begin) return at::empty(info.shape, opts);
  if (reinterpret_cast<uintptr_t>(ptr) % elem != 0) {
    // Misaligned for its element type: copy out rather than hand kernels an unaligned pointer.
    at::Tensor out = at::empty(info.shape, opts);
    std::memcpy(out.data_ptr(), ptr, info.end - info.begin);
    return out;
  }
  auto keepAlive = new std::shared_ptr<void>(mapping_);
  return at::from_blob(
      ptr, info.shape, [keepAlive](void*) { delete keepAlive; }, opts);
}

void writeSafetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, at::Tensor>> sorted;
  sorted.reserve(tensors.size());
  for (const auto& [name, t] : tensors) sorted.emplace_back(name, t.detach().to(at::kCPU).contiguous());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  std::map<std::string, Json> header;
  if (!metadata.empty()) {
    std::map<std::string, Json> meta;
    for (const auto& [k, v] : metadata) meta[k] = Json::makeString(v);
    header["__metadata__"] = Json::makeObject(std::move(meta));
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    if (name == "__metadata__") fail(codes::kInvalidArgument, "a tensor may not be named __metadata__");
    const char* dt = nullptr;
    switch (t.scalar_type()) {
      case at::kDouble: dt = "F64"; break;
      case at::kFloat: dt = "F32"; break;
      case at::kHalf: dt = "F16"; break;
      case at::kBFloat16: dt = "BF16"; break;
      case at::kLong: dt = "I64"; break;
      case at::kInt: dt = "I32"; break;
      case at::kShort: dt = "I16"; break;
      case at::kChar: dt = "I8"; break;
      case at::kByte: dt = "U8"; break;
      case at::kBool: dt = "BOOL"; break;
#if defined(SD_HAVE_FLOAT8)
      case at::kFloat8_e4m3fn: dt = "F8_E4M3"; break;
      case at::kFloat8_e5m2: dt = "F8_E5M2"; break;
#endif
      default: fail(codes::kInvalidArgument, "cannot write tensor \"" + name + "\" of dtype " + std::string(c10::toString(t.scalar_type())));
    }
    std::vector<Json> shape;
    for (auto d : t.sizes()) shape.push_back(Json::makeInteger(d));
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = Json::makeObject({{"dtype", Json::makeString(dt)},
                                     {"shape", Json::makeArray(std::move(shape))},
                                     {"data_offsets", Json::makeArray({Json::makeInteger(static_cast<int64_t>(offset)),
                                                                       Json::makeInteger(static_cast<int64_t>(offset + bytes))})}});
    offset += bytes;
  }
  std::string json = Json::makeObject(std::move(header)).dump();
  while (json.size() % 8 != 0) json += ' ';
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(codes::kInvalidArgument, "cannot write " + path);
    uint64_t n = json.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(json.data(), static_cast<std::streamsize>(json.size()));
    for (const auto& [name, t] : sorted)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    if (!out) fail(codes::kInvalidArgument, "error writing " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(codes::kInvalidArgument, "cannot rename " + tmp + " to " + path);
}

// ---- 8-bit floats (OCP FP8: E4M3FN and E5M2) -------------------------------------------------

namespace {
float fp8ToFloat(uint8_t b, bool e4m3) {
  const int sign = (b >> 7) & 1;
  const int expBits = e4m3 ? 4 : 5;
  const int manBits = e4m3 ? 3 : 2;
  const int bias = e4m3 ? 7 : 15;
  const int e = (b >> manBits) & ((1 << expBits) - 1);
  const int m = b & ((1 << manBits) - 1);
  float v;
  if (e4m3 && e == 15 && m == 7) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (!e4m3 && e == 31) {
    v = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m) / (1 << manBits), 1 - bias);
  } else {
    v = std::ldexp(1.0f + static_cast<float>(m) / (1 << manBits), e - bias);
  }
  return sign ? -v : v;
}

bool isE4m3(const std::string& format) {
  if (format == "e4m3fn" || format == "e4m3") return true;
  if (format == "e5m2") return false;
  fail(codes::kInvalidArgument, "unknown fp8 format \"" + format + "\" (expected \"e4m3fn\" or \"e5m2\")");
}
}  // namespace

namespace {
/// The 256 decoded values of a format, built once (never destroyed: see runtime/dtype_support.cc).
const std::array<float, 256>& fp8Values(bool e4m3) {
  static const auto* tables = [] {
    auto* t = new std::array<std::array<float, 256>, 2>();
    for (int i = 0; i < 256; ++i) {
      (*t)[0][i] = fp8ToFloat(static_cast<uint8_t>(i), false);
      (*t)[1][i] = fp8ToFloat(static_cast<uint8_t>(i), true);
    }
    return t;
  }();
  return (*tables)[e4m3 ? 1 : 0];
}

/// `t` itself when its elements fill its storage span in some order (contiguous, channels-last,
/// …), so a flat loop over it and over an empty_strided twin visits matching elements; else a
/// contiguous copy.
at::Tensor denseOrContiguous(const at::Tensor& t) { return t.is_non_overlapping_and_dense() ? t : t.contiguous(); }

constexpr int64_t kGrain = 1 << 16;  // elements per parallel task
}  // namespace

at::Tensor decodeFp8(const at::Tensor& bytes, const std::string& format, at::ScalarType dtype) {
  const bool e4m3 = isE4m3(format);
  if (!bytes.device().is_cpu()) {  // a table lookup on the device
    const std::array<float, 256>& values = fp8Values(e4m3);
    at::Tensor table = at::from_blob(const_cast<float*>(values.data()), {256}, at::kFloat);  // [256], copied below
    at::Tensor idx = bytes.to(at::kLong);
    return table.to(bytes.device()).index_select(0, idx.reshape({-1})).reshape(bytes.sizes()).to(dtype);
  }
  // CPU: one pass, byte → value of `dtype` through a 256-entry table (every fp8 value is exact in
  // float16 / bfloat16 / float32), keeping the source's strides (channels-last weights stay so).
  at::Tensor src = denseOrContiguous(bytes);
  at::Tensor out = at::empty_strided(src.sizes(), src.strides(), src.options().dtype(dtype));
  const auto* in = static_cast<const uint8_t*>(src.data_ptr());
  const std::array<float, 256>& values = fp8Values(e4m3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "decodeFp8", [&] {
    std::array<scalar_t, 256> lut;
    for (int i = 0; i < 256; ++i) lut[i] = static_cast<scalar_t>(values[i]);
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, src.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) o[i] = lut[in[i]];
    });
  });
  return out;
}

at::Tensor encodeFp8(const at::Tensor& values, const std::string& format) {
  const bool e4m3 = isE4m3(format);
  const int manBits = e4m3 ? 3 : 2;
  const int bias = e4m3 ? 7 : 15;
  const int maxCode = e4m3 ? 0x7E : 0x7B;  // largest finite magnitude: 448 / 57344
  const uint8_t nanCode = e4m3 ? 0x7F : 0x7E;
  const float maxFinite = fp8Values(e4m3)[maxCode];
  const int minNormalExp = 1 - bias;                                          // -6 / -14
  const float subnormalScale = std::ldexp(1.0f, manBits - minNormalExp);      // 1 / smallest subnormal
  const int drop = 23 - manBits;                                              // float32 mantissa bits dropped
  const uint32_t half = 1u << (drop - 1), restMask = (1u << drop) - 1;

  at::Tensor x = denseOrContiguous(values.to(at::kCPU, at::kFloat));
  at::Tensor out = at::empty_strided(x.sizes(), x.strides(), x.options().dtype(at::kByte));
  const float* in = x.data_ptr<float>();
  uint8_t* o = out.data_ptr<uint8_t>();
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = in[i];
      if (std::isnan(v)) {
        o[i] = nanCode;
        continue;
      }
      const float a = std::min(std::fabs(v), maxFinite);  // saturate (inf included)
      uint32_t bits;
      std::memcpy(&bits, &a, sizeof bits);
      const int exp = static_cast<int>(bits >> 23) - 127;
      int code;
      if (exp < minNormalExp) {
        // fp8 subnormal range: a multiple of the smallest subnormal, rounded half to even
        // (nearbyint in the default rounding mode); 2^minNormalExp itself is the first normal code
        code = static_cast<int>(std::nearbyint(a * subnormalScale));
      } else {
        // keep manBits of the mantissa, round half to even on the dropped bits; a carry out of
        // the mantissa moves to the next exponent by the addition itself
        const uint32_t mant = bits & 0x7FFFFF;
        uint32_t q = mant >> drop;
        const uint32_t rest = mant & restMask;
        if (rest > half || (rest == half && (q & 1))) ++q;
        code = ((exp + bias) << manBits) + static_cast<int>(q);
      }
      o[i] = static_cast<uint8_t>(std::min(code, maxCode) + (std::signbit(v) ? 128 : 0));
    }
  });
  return out.contiguous().to(values.device());
}

}  // namespace sd::io
