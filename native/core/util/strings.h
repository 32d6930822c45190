// Small string and path helpers shared by the readers (io/, loaders/): prefix/suffix tests,
// lower-casing, "a, b, … (N more)" lists for error messages, and stat()-based file tests.
#pragma once

#include <sys/stat.h>

#include <cctype>
#include <filesystem>
#include <string>
#include <vector>

#include "util/error.h"

namespace sd::util {

inline bool startsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}
inline bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
/// ASCII lower case.
inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// "a, b, c, … (N more)" with at most `max` items, "(none)" for an empty list (for messages).
inline std::string listSome(const std::vector<std::string>& items, size_t max = 12) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < max; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > max) out += ", … (" + std::to_string(items.size() - max) + " more)";
  return out.empty() ? "(none)" : out;
}

/// True when `p` exists and is a directory / a regular file (following links); never throws.
inline bool isDir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
inline bool isFile(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
/// What a path that exists but is not a regular file is (following links), for messages:
/// "a named pipe (FIFO)", "a socket", "a device", "a directory"; "" for a regular file or a
/// path stat() cannot read (the caller's open() then reports it). Never throws, never blocks
/// (stat() does not open the file, so a FIFO with no writer is never waited on).
inline std::string nonRegularKind(const std::string& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return "";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISFIFO(st.st_mode)) return "a named pipe (FIFO)";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
  return "not a regular file";
}
/// Refuses a FIFO, socket or device up front (never opened: a FIFO blocks) with SdException
/// `code`: "<label> is <kind>, not a regular file; refusing to open it" (label defaults to the
/// path). A regular file, a directory or a missing path is left to the caller's own check.
inline void refuseSpecialFile(const std::string& p, const char* code, const std::string& label = "") {
  if (std::string kind = nonRegularKind(p); !kind.empty() && kind != "a directory")
    fail(code, (label.empty() ? p : label) + " is " + kind + ", not a regular file; refusing to open it");
}
/// `a/b` as std::filesystem joins it.
inline std::string joinPath(const std::string& a, const std::string& b) {
  return (std::filesystem::path(a) / b).string();
}

}  // namespace sd::util
