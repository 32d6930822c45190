// safetensors (https://github.com/huggingface/safetensors) reader and writer.
//
// The reader memory-maps the file and validates everything before any tensor is touched:
// header length bounded, JSON well-formed, known dtypes, every shape x dtype size equal to its
// byte range, every range inside the data section, ranges sorted without overlap or holes.
// Any violation is an SdException with code E_BAD_CHECKPOINT naming the file and the tensor.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sd::io {

/// The dtypes of the safetensors format that sd-native accepts.
enum class StDType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };

const char* dtypeName(StDType t);
size_t dtypeSize(StDType t);

/// One tensor entry of a header. Offsets are relative to the start of the data section.
struct TensorInfo {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

/// A parsed and validated header.
struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;  // the optional "__metadata__" object
  std::vector<TensorInfo> tensors;              // in data-offset order
  uint64_t headerSize = 0;                      // N, the JSON length
  uint64_t dataSize = 0;                        // bytes after 8 + N
};

/// Largest header accepted (safetensors itself refuses > 100 MB).
constexpr uint64_t kMaxHeaderSize = 100ull * 1024 * 1024;
/// Most JSON values (objects, arrays, strings, numbers...) a header may hold: a tensor entry takes
/// about 8, so this admits ~100k tensors (real checkpoints hold a few thousand) while bounding the
/// parse memory of a hostile 100 MB header such as `[0,0,0,...]` (~50M values, several GB) to
/// about 150 MB.
constexpr uint64_t kMaxHeaderValues = 1'000'000;

/// Validates the first `size` bytes of a file (8-byte length, JSON header, data section) and
/// returns the header. Pure function over memory: used by the reader and by the fuzz tests.
/// Throws SdException(E_BAD_CHECKPOINT) naming `where` on any inconsistency.
SafetensorsHeader parseSafetensorsHeader(const uint8_t* data, uint64_t size, const std::string& where);

/// A memory-mapped, validated safetensors file. Tensors returned by tensor() are CPU views of
/// the mapping (copy-on-write, so in-place writes never reach the file) that keep it alive.
class SafetensorsFile {
 public:
  /// Opens and validates `path`. E_MODEL_NOT_FOUND if it cannot be opened,
  /// E_BAD_CHECKPOINT if it is not a valid safetensors file.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  /// Validates an in-memory safetensors image of `size` bytes at `data` (named `where` in errors).
  /// `owner` keeps the bytes alive for as long as the object or any tensor view of it lives
  /// (pass an empty pointer when the caller guarantees that). E_BAD_CHECKPOINT when invalid.
  static std::shared_ptr<SafetensorsFile> fromMemory(std::shared_ptr<void> owner, const uint8_t* data, uint64_t size,
                                                     const std::string& where);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const TensorInfo* find(const std::string& name) const;

  /// The tensor `name` as a CPU tensor of its own dtype. F8 tensors come back as float8 dtypes
  /// where libtorch has them (>= 2.1) and as raw uint8 bytes otherwise (decode with decodeFp8).
  at::Tensor tensor(const std::string& name) const;
  at::Tensor tensor(const TensorInfo& info) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
  std::shared_ptr<void> mapping_;  // munmap on release
  const uint8_t* base_ = nullptr;  // start of the data section
};

/// Writes tensors (any device; copied to CPU, contiguous) in the safetensors format.
/// Header keys are sorted, data laid out in the same order, JSON padded with spaces to 8 bytes.
void writeSafetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// at::ScalarType for a safetensors dtype (F8 → kByte when libtorch has no float8).
at::ScalarType toScalarType(StDType t);

/// Decodes raw 8-bit float bytes (uint8 tensor, any shape and strides) to `dtype` (float32,
/// float16, bfloat16: every fp8 value is exact in each), same shape and strides. format: "e4m3fn"
/// or "e5m2" (OCP FP8). CPU: one parallel pass through a 256-entry table. E_INVALID_ARGUMENT for
/// another format.
at::Tensor decodeFp8(const at::Tensor& bytes, const std::string& format, at::ScalarType dtype = at::kFloat);
/// Encodes a float tensor to 8-bit float codes (uint8, contiguous, same shape and device):
/// round-to-nearest-even, saturating to the largest finite value (both formats), NaN → the
/// format's NaN code, -0 keeps its sign. E_INVALID_ARGUMENT for another format.
at::Tensor encodeFp8(const at::Tensor& values, const std::string& format);

}  // namespace sd::io
