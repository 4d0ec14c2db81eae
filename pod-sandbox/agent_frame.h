#pragma once

// Framing of the agent channel: each frame is a 4-byte big-endian length and that many bytes of
// payload (one serialized podvisor.agent.v1.Frame). The decoder takes bytes as they arrive from
// an untrusted guest and never buffers more than one frame.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace podvisor {

inline constexpr size_t kAgentFrameHeaderBytes = 4;
inline constexpr uint32_t kAgentMaxFrameBytes = 4u << 20;  // 4 MiB, both directions

// Returns header + payload. `payload` must not exceed kAgentMaxFrameBytes (checked by callers).
std::string EncodeAgentFrame(absl::string_view payload);

// Splits a byte stream into frame payloads. Not thread-safe.
class AgentFrameDecoder {
 public:
  explicit AgentFrameDecoder(uint32_t max_frame_bytes = kAgentMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Appends bytes. Fails (and stays failed) when a header announces a frame over the limit:
  // the stream cannot be resynchronised, so the caller must close the channel.
  absl::Status Feed(absl::string_view bytes);
  // The next complete payload, if any.
  std::optional<std::string> Next();
  // Fails once a frame over the limit was announced; the channel must then be closed.
  absl::Status status() const { return error_; }
  // Bytes received that do not yet form a whole frame.
  size_t buffered() const { return buffer_.size() - offset_; }

 private:
  uint32_t max_frame_bytes_;
  std::string buffer_;
  size_t offset_ = 0;
  absl::Status error_;
};

}  // namespace podvisor
