#include "pod-sandbox/container_streaming_pump.h"

#include "common/log.h"

namespace podvisor {

SinkPump::SinkPump(streaming::ByteSink* sink, Options options, Ack ack)
    : sink_(sink), options_(options), ack_(std::move(ack)) {
  if (sink_ != nullptr) thread_ = std::thread([this] { Run(); });
}

void SinkPump::Push(absl::string_view data, bool eof) {
  absl::MutexLock lock(&mu_);
  if (stopped_ || eof_) return;
  if (!data.empty() && sink_ != nullptr) {
    if (queued_ + data.size() > options_.max_queued) {
      PV_LOG(kWarning) << "streaming: output stream ended: its producer ran "
                       << options_.max_queued << " bytes ahead of the client";
      overrun_ = true;
      queue_.clear();
      queued_ = 0;
      eof = true;
    } else {
      queue_.emplace_back(data.data(), data.size());
      queued_ += data.size();
    }
  }
  if (eof) {
    eof_ = true;
    if (sink_ == nullptr) flushed_ = true;
  }
}

void SinkPump::Run() {
  uint64_t consumed = 0;
  uint64_t acked = 0;
  mu_.Lock();
  for (;;) {
    mu_.Await(absl::Condition(
        +[](SinkPump* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
          return p->stopped_ || !p->queue_.empty() || p->eof_;
        },
        this));
    if (stopped_) break;
    if (!queue_.empty()) {
      std::string data = std::move(queue_.front());
      queue_.pop_front();
      const bool broken = broken_;
      mu_.Unlock();
      const bool written = broken || sink_->Write(data);
      consumed += data.size();
      if (ack_ && options_.ack_every > 0 && consumed - acked >= options_.ack_every) {
        ack_(consumed);
        acked = consumed;
      }
      mu_.Lock();
      queued_ -= data.size();
      if (!written) broken_ = true;
      continue;
    }
    // eof_ and nothing queued.
    mu_.Unlock();
    sink_->Close();
    mu_.Lock();
    closed_ = true;
    flushed_ = true;
    break;
  }
  mu_.Unlock();
}

bool SinkPump::WaitFlushed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](SinkPump* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->flushed_; }, this),
      timeout);
}

bool SinkPump::overrun() const {
  absl::MutexLock lock(&mu_);
  return overrun_;
}

bool SinkPump::broken() const {
  absl::MutexLock lock(&mu_);
  return broken_;
}

void SinkPump::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (sink_ != nullptr && !closed_) {
    sink_->Close();
    closed_ = true;
  }
}

}  // namespace podvisor
