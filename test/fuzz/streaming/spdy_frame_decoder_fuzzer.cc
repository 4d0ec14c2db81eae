// Feeds arbitrary bytes to the SPDY frame decoder, split into pieces as a socket would deliver
// them, and checks what it returns: no crash, no hang, no frame larger than the limit, and a
// decoder that stays failed after an error.
//
// Build: CC=clang CXX=clang++ cmake -DPODVISOR_BUILD_FUZZERS=ON ...; ninja
// spdy_frame_decoder_fuzzer. Run: fuzz/spdy_frame_decoder_fuzzer -max_total_time=60 corpus/
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "streaming/spdy_framer.h"

namespace spdy = podvisor::streaming::spdy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the read size, so that frames straddle appends in many ways.
  const size_t piece = 1 + data[0] % 64;
  const size_t kLimit = 1 << 16;
  spdy::FrameDecoder decoder(kLimit);
  bool failed = false;
  for (size_t at = 1; at < size; at += piece) {
    size_t n = std::min(piece, size - at);
    decoder.Append(std::string(reinterpret_cast<const char*>(data + at), n));
    for (;;) {
      absl::StatusOr<std::optional<spdy::Frame>> frame = decoder.Next();
      if (!frame.ok()) {
        failed = true;
        break;
      }
      if (!frame->has_value()) break;
      if (failed) std::abort();  // a failed decoder must not produce frames
      if ((*frame)->data.size() > kLimit) std::abort();
      for (const auto& [name, value] : (*frame)->headers) {
        if (name.empty()) std::abort();
      }
    }
    if (failed) {
      if (decoder.Next().ok()) std::abort();
      return 0;
    }
  }
  // Header blocks alone, through a fresh decompressor.
  spdy::HeaderDecompressor decompressor;
  (void)decompressor.Decompress(
      absl::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  (void)spdy::ParseHeaderBlock(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
