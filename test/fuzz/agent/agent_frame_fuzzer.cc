// Feeds arbitrary bytes, as a hostile guest would send them, through the host's frame decoder
// and guest-frame validation, then converts whatever passes into domain types.
//
//   cmake -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
//         -DPODVISOR_BUILD_FUZZERS=ON <src> && ninja agent_frame_fuzzer
//   ./fuzz/agent_frame_fuzzer -max_total_time=60 <corpus dir>

#include <cstddef>
#include <cstdint>
#include <string>

#include "pod-sandbox/agent_frame.h"
#include "pod-sandbox/agent_wire.h"

namespace {

void Consume(const std::string& payload) {
  absl::StatusOr<podvisor::agent::v1::Frame> frame = podvisor::ParseGuestFrame(payload);
  if (!frame.ok()) return;
  namespace v1 = podvisor::agent::v1;
  if (frame->has_event()) {
    podvisor::AgentEvent e = podvisor::ToAgentEvent(frame->event());
    if (!podvisor::IsValidAgentId(e.container_id)) __builtin_trap();
  }
  if (frame->has_response()) {
    const v1::Response& r = frame->response();
    (void)podvisor::FromWireStatus(r.status());
    if (r.has_hello()) (void)podvisor::ToAgentInfo(r.hello());
    if (r.has_stats()) (void)podvisor::ToContainerStats(r.stats());
    if (r.has_exit_status()) (void)podvisor::ToExitInfo(r.exit_status());
  }
  if (frame->has_stream() && frame->stream().data().size() > podvisor::kAgentMaxStreamChunk) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks how the rest is chunked, as reads from a socket would split it.
  const size_t chunk = 1 + data[0] % 64;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  size_t left = size - 1;
  // A small limit so that the fuzzer reaches the "too large" paths.
  podvisor::AgentFrameDecoder decoder(data[0] & 0x80 ? 4096 : podvisor::kAgentMaxFrameBytes);
  while (left > 0) {
    const size_t n = left < chunk ? left : chunk;
    if (!decoder.Feed(absl::string_view(bytes, n)).ok()) break;
    bytes += n;
    left -= n;
    while (std::optional<std::string> payload = decoder.Next()) {
      if (payload->size() > podvisor::kAgentMaxFrameBytes) __builtin_trap();
      Consume(*payload);
    }
    if (!decoder.status().ok()) break;
  }
  // The payload alone, without framing, too.
  Consume(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  return 0;
}
