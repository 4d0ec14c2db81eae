#include "streaming/spdy_connection.h"

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace podvisor::streaming {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxDataChunk = 32 * 1024;
constexpr size_t kMaxOpenStreams = 1000;

}  // namespace

SpdyConnection::SpdyConnection(std::unique_ptr<ByteStream> transport, std::string initial_bytes,
                               SpdyLimits limits)
    : transport_(std::move(transport)),
      executor_(transport_->executor()),
      read_buffer_(kReadChunk),
      initial_bytes_(std::move(initial_bytes)),
      limits_(limits),
      last_activity_(std::chrono::steady_clock::now()) {}

SpdyConnection::~SpdyConnection() = default;

void SpdyConnection::Start(StreamHandler on_stream, ResetHandler on_reset) {
  ArmIdleTimer(limits_.idle_timeout);
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      on_stream_ = std::move(on_stream);
      on_reset_ = std::move(on_reset);
    }
    // Announce a larger receive window than SPDY's 64 KiB default, per stream and per session.
    QueueLocked(spdy::EncodeSettings(
        {{0, spdy::kSettingsInitialWindowSize, static_cast<uint32_t>(kReceiveWindow)}}));
    QueueLocked(spdy::EncodeWindowUpdate(0, kReceiveWindow - spdy::kDefaultWindow));
  }
  if (!initial_bytes_.empty()) {
    // Frames the client sent right behind its upgrade request, already read with it.
    {
      absl::MutexLock lock(&mu_);
      decoder_.Append(initial_bytes_);
    }
    initial_bytes_.clear();
    OnRead({}, 0);  // handles them, then reads on
    return;
  }
  StartRead();
}

// Closes the connection once nothing was read or written for the idle timeout. On the executor.
void SpdyConnection::ArmIdleTimer(absl::Duration after) {
  if (!idle_timer_) idle_timer_ = std::make_unique<boost::asio::steady_timer>(executor_);
  idle_timer_->expires_after(absl::ToChronoMilliseconds(after));
  idle_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    const auto idle = std::chrono::steady_clock::now() - self->last_activity_;
    const auto limit = absl::ToChronoNanoseconds(self->limits_.idle_timeout);
    if (idle < limit) {
      self->ArmIdleTimer(absl::FromChrono(limit - idle));
      return;
    }
    PV_LOG(kInfo) << "streaming: closing a SPDY connection idle for "
                  << absl::FormatDuration(self->limits_.idle_timeout);
    absl::MutexLock lock(&self->mu_);
    self->CloseLocked();
  });
}

void SpdyConnection::StartRead() {
  auto self = shared_from_this();
  transport_->AsyncReadSome(
      boost::asio::buffer(read_buffer_),
      [self](const boost::system::error_code& ec, size_t n) { self->OnRead(ec, n); });
}

void SpdyConnection::OnRead(const boost::system::error_code& ec, size_t n) {
  std::vector<std::shared_ptr<Stream>> opened;
  std::vector<uint32_t> reset;
  bool read_more = false;
  if (n > 0) last_activity_ = std::chrono::steady_clock::now();
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    if (ec) {
      // The client went away (or closed its side): nothing more can be exchanged.
      CloseLocked();
      return;
    }
    decoder_.Append(absl::string_view(read_buffer_.data(), n));
    while (!closed_ && !read_stopped_) {
      absl::StatusOr<std::optional<spdy::Frame>> frame = decoder_.Next();
      if (!frame.ok()) {
        ProtocolErrorLocked(frame.status().message());
        break;
      }
      if (!frame->has_value()) break;
      if ((*frame)->type == spdy::FrameType::kRstStream && streams_.contains((*frame)->stream_id)) {
        reset.push_back((*frame)->stream_id);
      }
      HandleFrameLocked(**frame, opened);
    }
    if (!closed_ && !read_stopped_) {
      if (ShouldPauseReadLocked()) {
        read_paused_ = true;
      } else {
        read_more = true;
      }
    }
  }
  StreamHandler handler;
  ResetHandler reset_handler;
  if (!opened.empty() || !reset.empty()) {
    absl::MutexLock lock(&mu_);
    handler = on_stream_;  // a copy: Abort() may drop the connection's own at any time
    reset_handler = on_reset_;
  }
  if (reset_handler) {
    for (uint32_t id : reset) reset_handler(id);
  }
  for (const std::shared_ptr<Stream>& stream : opened) {
    bool accepted = handler ? handler(stream) : false;
    absl::MutexLock lock(&mu_);
    if (closed_) break;
    if (accepted) {
      stream->replied_ = true;
      QueueLocked(spdy::EncodeSynReply(compressor_, stream->id_, 0, {}));
    } else {
      stream->reset_ = true;
      QueueLocked(spdy::EncodeRstStream(stream->id_, spdy::kRefusedStream));
      streams_.erase(stream->id_);
    }
    cv_.SignalAll();
  }
  if (read_more) StartRead();
}

void SpdyConnection::ProtocolErrorLocked(absl::string_view why) {
  PV_LOG(kWarning) << "streaming: ending SPDY connection: " << why;
  QueueLocked(spdy::EncodeGoAway(last_stream_id_, spdy::kGoAwayProtocolError));
  read_stopped_ = true;
  finishing_ = true;
  close_after_flush_ = true;
  ScheduleWriteLocked();
}

bool SpdyConnection::ShouldPauseReadLocked() const {
  const size_t per_stream = std::min(kMaxBufferedPerStream, limits_.max_buffered_input);
  size_t total = 0;
  for (const auto& [id, stream] : streams_) {
    if (stream->buffered_ > per_stream) return true;
    total += stream->buffered_;
  }
  return total > limits_.max_buffered_input;
}

void SpdyConnection::MaybeResumeReadLocked() {
  if (!read_paused_ || closed_ || ShouldPauseReadLocked()) return;
  read_paused_ = false;
  boost::asio::post(executor_, [self = shared_from_this()] { self->StartRead(); });
}

void SpdyConnection::HandleFrameLocked(spdy::Frame& frame,
                                       std::vector<std::shared_ptr<Stream>>& opened) {
  switch (frame.type) {
    case spdy::FrameType::kSynStream:
      HandleSynStreamLocked(frame, opened);
      break;
    case spdy::FrameType::kData:
      HandleDataLocked(frame);
      break;
    case spdy::FrameType::kRstStream: {
      auto it = streams_.find(frame.stream_id);
      if (it != streams_.end()) {
        it->second->reset_ = true;
        streams_.erase(it);
        cv_.SignalAll();
      }
      break;
    }
    case spdy::FrameType::kSettings:
      HandleSettingsLocked(frame);
      break;
    case spdy::FrameType::kPing:
      // Client pings carry odd ids; answer them. Even ids would be replies to ours (we send none).
      if (frame.ping_id % 2 == 1) QueueControlLocked(spdy::EncodePing(frame.ping_id));
      break;
    case spdy::FrameType::kGoAway:
      peer_gone_away_ = true;
      break;
    case spdy::FrameType::kWindowUpdate:
      HandleWindowUpdateLocked(frame);
      break;
    case spdy::FrameType::kSynReply:
    case spdy::FrameType::kHeaders:
      break;  // we open no streams; extra headers carry nothing we use
  }
}

void SpdyConnection::HandleSynStreamLocked(spdy::Frame& frame,
                                           std::vector<std::shared_ptr<Stream>>& opened) {
  uint32_t id = frame.stream_id;
  if (peer_gone_away_ || finishing_) {
    QueueControlLocked(spdy::EncodeRstStream(id, spdy::kRefusedStream));
    return;
  }
  if (id % 2 == 0 || id <= last_stream_id_) {
    // Client streams have odd, increasing ids.
    QueueControlLocked(spdy::EncodeRstStream(id, spdy::kProtocolError));
    return;
  }
  last_stream_id_ = id;
  if (streams_.size() >= kMaxOpenStreams) {
    QueueControlLocked(spdy::EncodeRstStream(id, spdy::kRefusedStream));
    return;
  }
  auto stream = std::make_shared<Stream>(shared_from_this(), id, std::move(frame.headers));
  stream->send_window_ = initial_send_window_;
  stream->remote_fin_ = (frame.flags & spdy::kFlagFin) != 0;
  stream->local_fin_ = (frame.flags & spdy::kFlagUnidirectional) != 0;
  streams_[id] = stream;
  opened.push_back(std::move(stream));
}

void SpdyConnection::HandleDataLocked(spdy::Frame& frame) {
  // Our receive windows: what a client that does flow control may send. One that does not
  // (spdystream) is held back by TCP once max_buffered_input is buffered.
  const int64_t size = static_cast<int64_t>(frame.data.size());
  auto it = streams_.find(frame.stream_id);
  if (it == streams_.end()) {
    if (frame.stream_id > last_stream_id_) {
      QueueControlLocked(spdy::EncodeRstStream(frame.stream_id, spdy::kInvalidStream));
    }
    return;  // a stream we already reset or forgot: its late data is dropped
  }
  Stream& stream = *it->second;
  if (stream.remote_fin_ || (flow_control_ && stream.recv_window_ < size)) {
    QueueControlLocked(spdy::EncodeRstStream(
        stream.id_, stream.remote_fin_ ? spdy::kStreamAlreadyClosed : spdy::kFlowControlError));
    stream.reset_ = true;
    streams_.erase(it);
    cv_.SignalAll();
    return;
  }
  session_recv_window_ -= size;
  if (flow_control_ && session_recv_window_ < 0) {
    ProtocolErrorLocked("the client sent more data than the session's receive window");
    return;
  }
  stream.recv_window_ -= size;
  if (!frame.data.empty()) {
    stream.buffered_ += frame.data.size();
    stream.inbound_.push_back(std::move(frame.data));
  }
  if ((frame.flags & spdy::kFlagFin) != 0) stream.remote_fin_ = true;
  cv_.SignalAll();
}

void SpdyConnection::HandleWindowUpdateLocked(const spdy::Frame& frame) {
  flow_control_ = true;
  if (frame.stream_id == 0) {
    session_send_window_ = std::min<int64_t>(session_send_window_ + frame.delta_window,
                                             spdy::kMaxWindow);
  } else {
    auto it = streams_.find(frame.stream_id);
    if (it == streams_.end()) return;
    int64_t window = it->second->send_window_ + frame.delta_window;
    if (window > spdy::kMaxWindow) {
      QueueControlLocked(spdy::EncodeRstStream(frame.stream_id, spdy::kFlowControlError));
      it->second->reset_ = true;
      streams_.erase(it);
    } else {
      it->second->send_window_ = window;
    }
  }
  cv_.SignalAll();
}

void SpdyConnection::HandleSettingsLocked(const spdy::Frame& frame) {
  for (const spdy::Setting& setting : frame.settings) {
    if (setting.id != spdy::kSettingsInitialWindowSize) continue;
    int64_t value = std::min<int64_t>(setting.value, spdy::kMaxWindow);
    int64_t delta = value - initial_send_window_;
    initial_send_window_ = value;
    flow_control_ = true;
    for (auto& [id, stream] : streams_) stream->send_window_ += delta;
  }
  cv_.SignalAll();
}

void SpdyConnection::QueueLocked(std::string bytes) {
  if (closed_) return;
  pending_output_ += bytes.size();
  out_.append(bytes);
  ScheduleWriteLocked();
}

void SpdyConnection::QueueControlLocked(std::string bytes) {
  if (closed_) return;
  if (++control_queued_ + control_writing_ > limits_.max_queued_control_frames) {
    // The client keeps sending frames that need an answer and reads none of the answers.
    PV_LOG(kWarning) << "streaming: closing a SPDY connection: more than "
                     << limits_.max_queued_control_frames
                     << " control replies queued for a client that does not read";
    CloseLocked();
    return;
  }
  QueueLocked(std::move(bytes));
}

void SpdyConnection::ScheduleWriteLocked() {
  if (write_scheduled_ || write_in_flight_) return;
  write_scheduled_ = true;
  boost::asio::post(executor_, [self = shared_from_this()] { self->DoWrite(); });
}

void SpdyConnection::DoWrite() {
  absl::MutexLock lock(&mu_);
  write_scheduled_ = false;
  if (closed_ || write_in_flight_) return;
  if (out_.empty()) {
    if (close_after_flush_) CloseLocked();
    return;
  }
  writing_.swap(out_);
  out_.clear();
  control_writing_ = control_queued_;
  control_queued_ = 0;
  write_in_flight_ = true;
  transport_->AsyncWrite(boost::asio::buffer(writing_),
                         [self = shared_from_this()](const boost::system::error_code& ec,
                                                     size_t) { self->OnWritten(ec); });
}

void SpdyConnection::OnWritten(const boost::system::error_code& ec) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  pending_output_ -= std::min(pending_output_, writing_.size());
  if (!ec && !writing_.empty()) last_activity_ = std::chrono::steady_clock::now();
  control_writing_ = 0;
  writing_.clear();
  cv_.SignalAll();
  if (closed_) return;
  if (ec) {
    CloseLocked();
    return;
  }
  if (!out_.empty() || close_after_flush_) ScheduleWriteLocked();
}

void SpdyConnection::CloseLocked() {
  if (closed_) return;
  closed_ = true;
  for (auto& [id, stream] : streams_) stream->reset_ = stream->reset_ || !stream->remote_fin_;
  streams_.clear();
  out_.clear();
  control_queued_ = 0;
  // Handlers hold the connection and the streams hold it too: dropping both here, at once,
  // breaks those cycles even if the executor never runs again (server stopping).
  on_stream_ = nullptr;
  on_reset_ = nullptr;
  cv_.SignalAll();
  // Socket and timer belong to the executor: touch them only there.
  boost::asio::post(executor_, [self = shared_from_this()] {
    if (self->finish_timer_) self->finish_timer_->cancel();
    if (self->idle_timer_) self->idle_timer_->cancel();
    self->transport_->Close();
    if (!self->done_.HasBeenNotified()) self->done_.Notify();
    auto callback = std::move(self->close_callback_);
    self->close_callback_ = nullptr;
    if (callback) callback();
  });
}

void SpdyConnection::Finish(absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  if (closed_ || finishing_) return;
  finishing_ = true;
  QueueLocked(spdy::EncodeGoAway(last_stream_id_, spdy::kGoAwayOk));
  ScheduleWriteLocked();
  auto self = shared_from_this();
  boost::asio::post(executor_, [self, grace] {
    self->finish_timer_ = std::make_unique<boost::asio::steady_timer>(self->executor_);
    self->finish_timer_->expires_after(absl::ToChronoMilliseconds(grace));
    self->finish_timer_->async_wait([self](const boost::system::error_code& ec) {
      if (ec) return;
      absl::MutexLock lock(&self->mu_);
      self->CloseLocked();
    });
  });
}

void SpdyConnection::Abort() {
  absl::MutexLock lock(&mu_);
  CloseLocked();
}

void SpdyConnection::MaybeForgetLocked(Stream* stream) {
  if ((stream->local_fin_ && stream->remote_fin_ && stream->buffered_ == 0) || stream->reset_) {
    streams_.erase(stream->id_);
  }
}

void SpdyConnection::ConsumedLocked(Stream* stream, size_t n) {
  if (closed_) return;
  stream->unacked_ += static_cast<int64_t>(n);
  session_unacked_ += static_cast<int64_t>(n);
  if (stream->unacked_ >= kReceiveWindow / 2 && !stream->remote_fin_ && !stream->reset_) {
    QueueLocked(spdy::EncodeWindowUpdate(stream->id_, static_cast<uint32_t>(stream->unacked_)));
    stream->recv_window_ += stream->unacked_;
    stream->unacked_ = 0;
  }
  if (session_unacked_ >= kReceiveWindow / 2) {
    QueueLocked(spdy::EncodeWindowUpdate(0, static_cast<uint32_t>(session_unacked_)));
    session_recv_window_ += session_unacked_;
    session_unacked_ = 0;
  }
  MaybeResumeReadLocked();
}

size_t SpdyConnection::Stream::Read(char* buf, size_t len) {
  SpdyConnection& c = *connection_;
  absl::MutexLock lock(&c.mu_);
  while (inbound_.empty() && !remote_fin_ && !reset_ && !c.closed_ && !read_cancelled_) {
    c.cv_.Wait(&c.mu_);
  }
  if (inbound_.empty() || len == 0 || read_cancelled_) {
    c.MaybeForgetLocked(this);
    return 0;
  }
  size_t copied = 0;
  while (copied < len && !inbound_.empty()) {
    const std::string& front = inbound_.front();
    size_t n = std::min(len - copied, front.size() - inbound_offset_);
    std::memcpy(buf + copied, front.data() + inbound_offset_, n);
    copied += n;
    inbound_offset_ += n;
    if (inbound_offset_ == front.size()) {
      inbound_.pop_front();
      inbound_offset_ = 0;
    }
  }
  buffered_ -= copied;
  c.ConsumedLocked(this, copied);
  return copied;
}

bool SpdyConnection::Stream::Write(absl::string_view data) {
  SpdyConnection& c = *connection_;
  size_t offset = 0;
  while (offset < data.size()) {
    absl::MutexLock lock(&c.mu_);
    auto can_send = [&] {
      if (c.closed_ || reset_ || local_fin_ || c.finishing_) return true;
      if (c.pending_output_ >= kMaxPendingOutput) return false;
      return !c.flow_control_ || (send_window_ > 0 && c.session_send_window_ > 0);
    };
    while (!can_send()) c.cv_.Wait(&c.mu_);
    if (c.closed_ || reset_ || local_fin_ || c.finishing_) return false;
    size_t n = std::min(data.size() - offset, kMaxDataChunk);
    if (c.flow_control_) {
      n = std::min<size_t>(n, static_cast<size_t>(std::min(send_window_, c.session_send_window_)));
      send_window_ -= static_cast<int64_t>(n);
      c.session_send_window_ -= static_cast<int64_t>(n);
    }
    c.QueueLocked(spdy::EncodeData(id_, 0, data.substr(offset, n)));
    offset += n;
  }
  return true;
}

void SpdyConnection::Stream::Close() {
  SpdyConnection& c = *connection_;
  absl::MutexLock lock(&c.mu_);
  if (local_fin_ || reset_ || c.closed_) return;
  local_fin_ = true;
  c.QueueLocked(spdy::EncodeData(id_, spdy::kFlagFin, ""));
  c.MaybeForgetLocked(this);
}

void SpdyConnection::Stream::Cancel() {
  SpdyConnection& c = *connection_;
  absl::MutexLock lock(&c.mu_);
  read_cancelled_ = true;
  c.cv_.SignalAll();
}

void SpdyConnection::Stream::Reset() {
  SpdyConnection& c = *connection_;
  absl::MutexLock lock(&c.mu_);
  if (reset_ || c.closed_) return;
  reset_ = true;
  c.QueueLocked(spdy::EncodeRstStream(id_, spdy::kCancel));
  c.streams_.erase(id_);
  c.MaybeResumeReadLocked();
  c.cv_.SignalAll();
}

}  // namespace podvisor::streaming
