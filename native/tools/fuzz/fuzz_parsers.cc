// libFuzzer harness over the parsers that read untrusted files (issue 19, item 5), built with
// ASan + UBSan by scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined). One binary, four
// targets, picked by the environment variable SD_FUZZ_TARGET:
//
//   safetensors  the input is a safetensors image: SafetensorsFile::fromMemory (the header parser)
//                and every tensor read back (io/safetensors)
//   json         the input is JSON text: Json::parse, dump() round trip (parse(dump(x)) dumps the
//                same), then a config reader over it: the UNet and VAE rule tables of the
//                single-file mapper (config/config_reader, loaders/single_file_keys)
//   lora         the input is a safetensors file read as a LoRA (loaders/lora: key forms, pairing)
//   single_file  the input is a safetensors file loaded as an original-layout checkpoint against
//                the config folder SD_FUZZ_CONFIG_DIR (loaders/single_file: family detection, key
//                mapping both ways)
//
// Contract checked: every input is accepted or refused with sd::SdException (a typed error).
// Anything else — a sanitizer report, a c10::Error or another exception escaping, a crash — is a
// finding: the harness aborts so libFuzzer records the input.
//
// This file is not part of the addon or of SD_BUILD_TOOLS (it needs clang's libFuzzer); it links
// the instrumented sources above against the rest of build/libsd_core.a.
#include <c10/util/Exception.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "config/config_reader.h"
#include "io/safetensors.h"
#include "loaders/lora.h"
#include "loaders/single_file.h"
#include "loaders/single_file_keys.h"
#include "util/error.h"
#include "util/json.h"

namespace {

enum class Target { kSafetensors, kJson, kLora, kSingleFile };
Target gTarget = Target::kSafetensors;
std::string gConfigDir;
std::string gScratch;  // the file the path-based loaders read

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_parsers: %s: %s\n", what, detail.c_str());
  std::abort();
}

void writeScratch(const uint8_t* data, size_t size) {
  const int fd = ::open(gScratch.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) finding("scratch", "cannot open " + gScratch);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) finding("scratch", "cannot write " + gScratch);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

void runSafetensors(const uint8_t* data, size_t size) {
  // an exact-size copy: any read past the end is an ASan report
  std::shared_ptr<uint8_t> buf(new uint8_t[size ? size : 1], std::default_delete<uint8_t[]>());
  if (size) std::memcpy(buf.get(), data, size);
  auto file = sd::io::SafetensorsFile::fromMemory(buf, buf.get(), size, "<fuzz>");
  for (const auto& info : file->header().tensors) {
    at::Tensor t = file->tensor(info);
    if (t.numel() > 0) (void)t.reshape({-1}).to(at::kDouble).sum().item<double>();
  }
}

void runJson(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sd::Json j = sd::Json::parse(text, "<fuzz>", 100000);
  const std::string once = j.dump();
  const std::string twice = sd::Json::parse(once, "<fuzz dump>").dump();
  if (once != twice) finding("json round trip", once + " != " + twice);
  const sd::ConfigReader c(j, "<fuzz>/config.json");
  // the range-checked getters the model constructors use
  (void)c.getIntIn("norm_num_groups", 32, 1, sd::ConfigReader::kMaxChannels);
  (void)c.intOrList("attention_head_dim", 4, 8);
  (void)c.getDoubleIn("scaling_factor", 0.18215, -1e6, 1e6);
  (void)c.getString("_class_name", "");
  (void)c.getDoubleList("latents_mean");
  // the single-file mapper's rule tables from a UNet / VAE config
  try {
    (void)sd::loaders::detail::unetRules(c);
  } catch (const sd::SdException&) {
  }
  (void)sd::loaders::detail::vaeRules(c);
}

void runLora(const uint8_t* data, size_t size) {
  writeScratch(data, size);
  (void)sd::loaders::readLoraFile(gScratch);
}

void runSingleFile(const uint8_t* data, size_t size) {
  writeScratch(data, size);
  const auto ckpt = sd::loaders::loadSingleFile(gScratch, gConfigDir);
  (void)sd::loaders::toOriginalLayout(ckpt, gConfigDir);  // and back (single_file_save)
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* t = std::getenv("SD_FUZZ_TARGET");
  const std::string target = t ? t : "";
  if (target == "safetensors") gTarget = Target::kSafetensors;
  else if (target == "json") gTarget = Target::kJson;
  else if (target == "lora") gTarget = Target::kLora;
  else if (target == "single_file") gTarget = Target::kSingleFile;
  else {
    std::fprintf(stderr, "fuzz_parsers: set SD_FUZZ_TARGET to safetensors | json | lora | single_file\n");
    std::exit(2);
  }
  const char* dir = std::getenv("SD_FUZZ_CONFIG_DIR");
  gConfigDir = dir ? dir : "";
  if (gTarget == Target::kSingleFile && gConfigDir.empty()) {
    std::fprintf(stderr, "fuzz_parsers: single_file needs SD_FUZZ_CONFIG_DIR (a diffusers folder)\n");
    std::exit(2);
  }
  const char* tmp = std::getenv("TMPDIR");
  gScratch = std::string(tmp && *tmp ? tmp : "/tmp") + "/sd-fuzz-" + std::to_string(::getpid()) + ".safetensors";
  std::atexit([] { ::unlink(gScratch.c_str()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    switch (gTarget) {
      case Target::kSafetensors: runSafetensors(data, size); break;
      case Target::kJson: runJson(data, size); break;
      case Target::kLora: runLora(data, size); break;
      case Target::kSingleFile: runSingleFile(data, size); break;
    }
  } catch (const sd::SdException&) {
    // refused with a typed error: the contract
  } catch (const c10::Error& e) {
    finding("untyped libtorch error", e.what_without_backtrace());
  } catch (const std::exception& e) {
    finding("untyped exception", e.what());
  }
  return 0;
}
