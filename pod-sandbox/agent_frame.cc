#include "pod-sandbox/agent_frame.h"

#include "absl/strings/str_cat.h"

namespace podvisor {
namespace {

uint32_t ReadLength(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

}  // namespace

std::string EncodeAgentFrame(absl::string_view payload) {
  std::string out;
  out.reserve(kAgentFrameHeaderBytes + payload.size());
  const uint32_t len = static_cast<uint32_t>(payload.size());
  out.push_back(static_cast<char>(len >> 24));
  out.push_back(static_cast<char>(len >> 16));
  out.push_back(static_cast<char>(len >> 8));
  out.push_back(static_cast<char>(len));
  out.append(payload.data(), payload.size());
  return out;
}

absl::Status AgentFrameDecoder::Feed(absl::string_view bytes) {
  if (!error_.ok()) return error_;
  // Drop consumed bytes before growing, so the buffer stays within one frame plus one read.
  if (offset_ > 0 && offset_ >= buffer_.size() / 2) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
  if (buffered() >= kAgentFrameHeaderBytes) {
    const uint32_t len = ReadLength(buffer_.data() + offset_);
    if (len > max_frame_bytes_) {
      error_ = absl::InvalidArgumentError(
          absl::StrCat("frame of ", len, " bytes exceeds the limit of ", max_frame_bytes_));
      buffer_.clear();
      offset_ = 0;
    }
  }
  return error_;
}

std::optional<std::string> AgentFrameDecoder::Next() {
  if (!error_.ok() || buffered() < kAgentFrameHeaderBytes) return std::nullopt;
  const uint32_t len = ReadLength(buffer_.data() + offset_);
  if (len > max_frame_bytes_) {
    error_ = absl::InvalidArgumentError(
        absl::StrCat("frame of ", len, " bytes exceeds the limit of ", max_frame_bytes_));
    return std::nullopt;
  }
  if (buffered() < kAgentFrameHeaderBytes + len) return std::nullopt;
  std::string payload = buffer_.substr(offset_ + kAgentFrameHeaderBytes, len);
  offset_ += kAgentFrameHeaderBytes + len;
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  return payload;
}

}  // namespace podvisor
