#include "agent/output_buffer.h"

#include <algorithm>

namespace podvisor::agent {

OutputBuffer::OutputBuffer(uint32_t stream_id, bool retain, size_t limit, bool release_on_ack)
    : retain_(retain), release_on_ack_(release_on_ack), limit_(limit), stream_id_(stream_id) {}

bool OutputBuffer::Append(const char* data, size_t n) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return closed_ || discard_ || held() < limit_; });
  if (closed_) return false;
  if (discard_) {
    floor_ += n;
    sent_ = floor_;
    return true;
  }
  data_.append(data, n);
  cv_.notify_all();
  return true;
}

void OutputBuffer::MarkEof() {
  std::lock_guard<std::mutex> lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

bool OutputBuffer::Next(size_t max_bytes, Chunk* out) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto end = [&] { return floor_ + held(); };
  // Without retain, an ended stream that went out (or is discarded) is done for good.
  const auto finished = [&] { return !retain_ && eof_ && (eof_sent_ || discard_); };
  cv_.wait(lock, [&] {
    return closed_ || finished() || (stream_id_ != 0 && (sent_ < end() || (eof_ && !eof_sent_)));
  });
  if (closed_ || finished()) return false;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(end() - sent_, max_bytes));
  out->stream_id = stream_id_;
  out->offset = sent_;
  out->data.assign(data_, head_ + static_cast<size_t>(sent_ - floor_), n);
  out->eof = eof_ && sent_ + n == end();
  out->generation = generation_;
  return true;
}

void OutputBuffer::Sent(const Chunk& chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  if (chunk.generation != generation_ || chunk.offset != sent_) return;
  sent_ += chunk.data.size();
  if (chunk.eof) eof_sent_ = true;
  if (!retain_ && !release_on_ack_) ReleaseTo(sent_);
  cv_.notify_all();
}

void OutputBuffer::ReleaseTo(uint64_t offset) {
  offset = std::min<uint64_t>(offset, floor_ + held());
  if (offset <= floor_) return;
  head_ += static_cast<size_t>(offset - floor_);
  floor_ = offset;
  if (head_ == data_.size()) {
    data_.clear();
    head_ = 0;
  } else if (head_ >= 64 * 1024 && head_ >= data_.size() / 2) {
    data_.erase(0, head_);
    head_ = 0;
  }
  cv_.notify_all();
}

void OutputBuffer::Ack(uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  // Only what was sent can have been consumed.
  ReleaseTo(std::min(offset, std::max(sent_, floor_)));
}

uint64_t OutputBuffer::Subscribe(uint32_t stream_id, uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generation_;
  stream_id_ = stream_id;
  sent_ = std::clamp<uint64_t>(offset, floor_, floor_ + held());
  eof_sent_ = false;
  discard_ = false;
  cv_.notify_all();
  return sent_;
}

void OutputBuffer::Unsubscribe() {
  std::lock_guard<std::mutex> lock(mu_);
  ++generation_;
  stream_id_ = 0;
  if (!retain_) {
    discard_ = true;
    floor_ += held();
    data_.clear();
    head_ = 0;
    sent_ = floor_;
  } else {
    sent_ = floor_;
  }
  cv_.notify_all();
}

bool OutputBuffer::WaitDrained(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    return closed_ || (eof_ && (stream_id_ == 0 || discard_ || eof_sent_));
  });
}

void OutputBuffer::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

uint32_t OutputBuffer::stream_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stream_id_;
}

uint64_t OutputBuffer::floor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return floor_;
}

uint64_t OutputBuffer::end() const {
  std::lock_guard<std::mutex> lock(mu_);
  return floor_ + held();
}

std::shared_ptr<OutputBuffer> MakeOutputBuffer(uint32_t stream_id, bool retain,
                                               uint32_t window) {
  if (retain || window == 0) return std::make_shared<OutputBuffer>(stream_id, retain);
  const size_t limit = std::clamp<size_t>(window, 64 * 1024, 16 << 20);
  return std::make_shared<OutputBuffer>(stream_id, false, limit, /*release_on_ack=*/true);
}

}  // namespace podvisor::agent
