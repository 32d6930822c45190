// One error type for the whole core: a stable code (the same strings the TypeScript SdError
// subclasses carry) and a message that names the file, field or argument at fault.
#pragma once

#include <stdexcept>
#include <string>

namespace sd {

namespace codes {
inline constexpr const char* kModelNotFound = "E_MODEL_NOT_FOUND";      // missing folder or file
inline constexpr const char* kBadCheckpoint = "E_BAD_CHECKPOINT";       // corrupt/lying file, bad keys or shapes
inline constexpr const char* kBadConfig = "E_BAD_CONFIG";               // config.json missing or missing a field
inline constexpr const char* kUnsupportedModel = "E_UNSUPPORTED_MODEL"; // a model family or option we do not run
inline constexpr const char* kInvalidArgument = "E_INVALID_ARGUMENT";   // a bad call argument
inline constexpr const char* kOutOfMemory = "E_OUT_OF_MEMORY";
inline constexpr const char* kAborted = "E_ABORTED";
inline constexpr const char* kDeviceUnavailable = "E_DEVICE_UNAVAILABLE";
inline constexpr const char* kNumerical = "E_NUMERICAL";                // NaN/inf where an image should be
inline constexpr const char* kDisposed = "E_DISPOSED";
inline constexpr const char* kInternal = "E_INTERNAL";
}  // namespace codes

/// The exception every core function throws for a failure a caller can act on.
class SdException : public std::runtime_error {
 public:
  SdException(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

/// Throws SdException(code, message).
[[noreturn]] inline void fail(const char* code, const std::string& message) {
  throw SdException(code, message);
}

}  // namespace sd
