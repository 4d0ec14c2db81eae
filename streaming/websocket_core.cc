#include <algorithm>
#include <cstring>

#include "streaming/websocket_connection.h"

namespace podvisor::streaming {
namespace {
constexpr size_t kMaxMessagePayload = 64 * 1024;
}  // namespace

WebSocketCore::WebSocketCore(bool base64, bool close_signal, size_t channels,
                             std::vector<bool> readable)
    : base64_(base64), close_signal_(close_signal) {
  // Channel numbers are one byte: the server refuses requests that would need more.
  for (size_t i = 0; i < std::min<size_t>(channels, 256); ++i) {
    channels_.push_back(
        std::make_unique<WsChannel>(this, static_cast<unsigned char>(i), readable[i]));
  }
}

bool WebSocketCore::DeliverLocked(absl::string_view message) {
  if (message.empty()) return true;
  unsigned char number = static_cast<unsigned char>(message[0]);
  if (close_signal_ && number == kWsCloseSignal) {
    if (message.size() < 2) return false;
    unsigned char target = static_cast<unsigned char>(message[1]);
    if (target < channels_.size()) channels_[target]->ended_ = true;
    cv_.SignalAll();
    return true;
  }
  if (base64_) number = static_cast<unsigned char>(number - '0');
  if (number >= channels_.size() || !channels_[number]->readable_) return true;  // ignored
  WsChannel& channel = *channels_[number];
  if (channel.ended_) return true;
  absl::string_view payload = message.substr(1);
  if (base64_) {
    std::string decoded;
    if (!absl::Base64Unescape(payload, &decoded)) return true;  // dropped, as kubelet does
    channel.inbound_.append(decoded);
  } else {
    channel.inbound_.append(payload.data(), payload.size());
  }
  cv_.SignalAll();
  return true;
}

bool WebSocketCore::ShouldPauseLocked() const {
  const size_t per_channel = std::min(kMaxBufferedPerChannel, max_buffered_input_);
  size_t total = 0;
  for (const auto& channel : channels_) {
    const size_t buffered = channel->inbound_.size() - channel->offset_;
    if (buffered > per_channel) return true;
    total += buffered;
  }
  return total > max_buffered_input_;
}

size_t WebSocketCore::WsChannel::Read(char* buf, size_t len) {
  WebSocketCore& c = *core_;
  absl::MutexLock lock(&c.mu_);
  auto available = [&] { return inbound_.size() - offset_; };
  while (available() == 0 && !ended_ && !c.closed_ && !cancelled_) c.cv_.Wait(&c.mu_);
  if (available() == 0 || len == 0 || cancelled_) return 0;
  size_t n = std::min(len, available());
  std::memcpy(buf, inbound_.data() + offset_, n);
  offset_ += n;
  if (offset_ == inbound_.size()) {
    inbound_.clear();
    offset_ = 0;
  } else if (offset_ > (1 << 20)) {
    inbound_.erase(0, offset_);
    offset_ = 0;
  }
  if (c.read_paused_ && !c.ShouldPauseLocked()) c.ResumeReadLocked();
  return n;
}

void WebSocketCore::WsChannel::Cancel() {
  absl::MutexLock lock(&core_->mu_);
  cancelled_ = true;
  core_->cv_.SignalAll();
}

bool WebSocketCore::WsChannel::Write(absl::string_view data) {
  WebSocketCore& c = *core_;
  size_t offset = 0;
  do {
    absl::MutexLock lock(&c.mu_);
    while (!c.closed_ && !c.finishing_ && c.pending_output_ >= kMaxPendingOutput) {
      c.cv_.Wait(&c.mu_);
    }
    if (c.closed_ || c.finishing_) return false;
    absl::string_view chunk = data.substr(offset, kMaxMessagePayload);
    std::string message;
    if (c.base64_) {
      message.push_back(static_cast<char>('0' + number_));
      message.append(absl::Base64Escape(chunk));
    } else {
      message.push_back(static_cast<char>(number_));
      message.append(chunk.data(), chunk.size());
    }
    c.pending_output_ += message.size();
    c.out_.push_back(std::move(message));
    c.ScheduleWriteLocked();
    offset += chunk.size();
  } while (offset < data.size());
  return true;
}

}  // namespace podvisor::streaming
