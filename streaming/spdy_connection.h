#pragma once

// One SPDY/3.1 server connection after the HTTP upgrade (internal to streaming/): frames in and
// out over a ByteStream, streams opened by the client, flow control, and the blocking Channel view
// of each stream that session threads use.
//
// Threading: all socket I/O and frame handling run on the transport's executor (the server's I/O
// thread), which never blocks. Session threads call Stream::Read/Write/Close, which block on the
// connection's condition variable. All state is guarded by the connection's mutex.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/asio.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "streaming/session.h"
#include "streaming/spdy_framer.h"
#include "streaming/transport.h"

namespace podvisor::streaming {

// Per-connection limits against a hostile or stuck client (docs/reliability.md).
struct SpdyLimits {
  // Client bytes buffered (received, not yet read by the sessions) over all streams before the
  // connection stops reading the socket.
  size_t max_buffered_input = 4 << 20;
  // Control replies (PING, RST_STREAM) queued but not yet written: beyond, the client floods
  // without reading and the connection is closed (HTTP/2 ping and reset floods).
  size_t max_queued_control_frames = 1000;
  // No byte read or written for this long: the connection is closed.
  absl::Duration idle_timeout = absl::Hours(4);
};

class SpdyConnection : public std::enable_shared_from_this<SpdyConnection> {
 public:
  class Stream;
  // Called on the I/O thread, without the connection's lock, for each stream the client opens.
  // Returning false refuses it (RST_STREAM REFUSED_STREAM).
  using StreamHandler = std::function<bool(const std::shared_ptr<Stream>&)>;
  // Called on the I/O thread, without the lock, when the client resets stream `id`.
  using ResetHandler = std::function<void(uint32_t id)>;

  // Per-stream receive window we announce, and how much we buffer before we stop reading the
  // socket (for peers that ignore flow control, as Go's spdystream does).
  static constexpr int64_t kReceiveWindow = 1 << 20;
  static constexpr size_t kMaxBufferedPerStream = 2 << 20;
  // Bytes queued for the socket above which writers wait.
  static constexpr size_t kMaxPendingOutput = 1 << 20;

  SpdyConnection(std::unique_ptr<ByteStream> transport, std::string initial_bytes,
                 SpdyLimits limits = {});
  ~SpdyConnection();

  // Starts reading. Call on the executor.
  void Start(StreamHandler on_stream, ResetHandler on_reset = nullptr);
  // Sends GOAWAY after what is queued and waits for the client to close the connection (it does
  // once it has read everything); closes it after `grace` otherwise. Any thread.
  void Finish(absl::Duration grace = absl::Seconds(10));
  // Closes now. Any thread.
  void Abort();
  // Runs `callback` on the executor once the connection has closed. Set before Start().
  void SetCloseCallback(std::function<void()> callback) { close_callback_ = std::move(callback); }
  // Keeps `object` alive as long as the connection.
  void Attach(std::shared_ptr<void> object) { attachment_ = std::move(object); }
  // Notified once the connection is closed (client gone, Finish done, Abort).
  const absl::Notification& done() const { return done_; }
  boost::asio::any_io_executor executor() { return executor_; }

 private:
  friend class Stream;
  void StartRead();
  void OnRead(const boost::system::error_code& ec, size_t n);
  void HandleFrameLocked(spdy::Frame& frame,
                         std::vector<std::shared_ptr<Stream>>& opened)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleSynStreamLocked(spdy::Frame& frame, std::vector<std::shared_ptr<Stream>>& opened)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleDataLocked(spdy::Frame& frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleWindowUpdateLocked(const spdy::Frame& frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleSettingsLocked(const spdy::Frame& frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueLocked(std::string bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A reply to something the client sent; counted against max_queued_control_frames.
  void QueueControlLocked(std::string bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ProtocolErrorLocked(absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeResumeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmIdleTimer(absl::Duration after);
  void ScheduleWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DoWrite();
  void OnWritten(const boost::system::error_code& ec);
  void CloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeForgetLocked(Stream* stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ConsumedLocked(Stream* stream, size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ShouldPauseReadLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::unique_ptr<ByteStream> transport_;
  boost::asio::any_io_executor executor_;
  std::vector<char> read_buffer_;
  std::string initial_bytes_;
  StreamHandler on_stream_ ABSL_GUARDED_BY(mu_);
  ResetHandler on_reset_ ABSL_GUARDED_BY(mu_);
  std::function<void()> close_callback_;
  std::shared_ptr<void> attachment_;
  absl::Notification done_;
  std::unique_ptr<boost::asio::steady_timer> finish_timer_;
  const SpdyLimits limits_;
  // On the executor only.
  std::unique_ptr<boost::asio::steady_timer> idle_timer_;
  std::chrono::steady_clock::time_point last_activity_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  spdy::FrameDecoder decoder_ ABSL_GUARDED_BY(mu_);
  spdy::HeaderCompressor compressor_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  uint32_t last_stream_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string writing_ ABSL_GUARDED_BY(mu_);
  size_t pending_output_ ABSL_GUARDED_BY(mu_) = 0;
  size_t control_queued_ ABSL_GUARDED_BY(mu_) = 0;   // control replies in out_
  size_t control_writing_ ABSL_GUARDED_BY(mu_) = 0;  // ... in writing_
  // What the client may still send before we grant more (our announced windows).
  int64_t session_recv_window_ ABSL_GUARDED_BY(mu_) = kReceiveWindow;
  bool write_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool read_stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool close_after_flush_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool peer_gone_away_ ABSL_GUARDED_BY(mu_) = false;
  // Send-side flow control applies once the peer shows it implements it (a WINDOW_UPDATE or an
  // INITIAL_WINDOW_SIZE setting); Go's spdystream never does and never sends either.
  bool flow_control_ ABSL_GUARDED_BY(mu_) = false;
  int64_t initial_send_window_ ABSL_GUARDED_BY(mu_) = spdy::kDefaultWindow;
  int64_t session_send_window_ ABSL_GUARDED_BY(mu_) = spdy::kDefaultWindow;
  int64_t session_unacked_ ABSL_GUARDED_BY(mu_) = 0;
};

// One stream, as a blocking Channel. Holds its connection alive.
class SpdyConnection::Stream : public Channel {
 public:
  Stream(std::shared_ptr<SpdyConnection> connection, uint32_t id, spdy::Headers headers)
      : connection_(std::move(connection)), id_(id), headers_(std::move(headers)) {}
  uint32_t id() const { return id_; }
  const spdy::Headers& headers() const { return headers_; }
  std::string Header(absl::string_view name) const { return spdy::HeaderValue(headers_, name); }

  size_t Read(char* buf, size_t len) override;
  bool Write(absl::string_view data) override;
  void Close() override;
  void Cancel() override;
  // Sends RST_STREAM CANCEL; both directions end.
  void Reset();

 private:
  friend class SpdyConnection;
  const std::shared_ptr<SpdyConnection> connection_;
  const uint32_t id_;
  const spdy::Headers headers_;
  // Guarded by connection_->mu_.
  std::deque<std::string> inbound_;
  size_t inbound_offset_ = 0;
  size_t buffered_ = 0;
  int64_t unacked_ = 0;
  int64_t recv_window_ = kReceiveWindow;
  int64_t send_window_ = spdy::kDefaultWindow;
  bool remote_fin_ = false;
  bool read_cancelled_ = false;
  bool local_fin_ = false;
  bool reset_ = false;
  bool replied_ = false;
};

}  // namespace podvisor::streaming
