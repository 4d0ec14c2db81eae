#pragma once

// The Kubernetes channel protocols over a WebSocket (internal to streaming/): every message starts
// with a channel number (a byte, or an ASCII digit in the base64 variants whose payload is base64).
// Remote command: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds the CLOSE signal
// (channel 255, payload = the channel being closed). Port-forward: per port a data channel 2i and
// an error channel 2i+1, each starting with the port as two little-endian bytes.
//
// Threading as for SpdyConnection: WebSocket I/O on the executor, channels used from session
// threads, one mutex per connection.

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "streaming/session.h"

namespace podvisor::streaming {

inline constexpr const char* kWsProtocolV5 = "v5.channel.k8s.io";
inline constexpr const char* kWsProtocolV4 = "v4.channel.k8s.io";
inline constexpr const char* kWsProtocolV4Base64 = "v4.base64.channel.k8s.io";
inline constexpr const char* kWsProtocolV1 = "channel.k8s.io";
inline constexpr const char* kWsProtocolV1Base64 = "base64.channel.k8s.io";
inline constexpr unsigned char kWsCloseSignal = 255;
// The largest message a client may send (clients send stdin in chunks of tens of KiB).
inline constexpr size_t kMaxWebSocketMessage = 1 << 20;

// The parts of a WebSocket connection that do not depend on the stream type.
class WebSocketCore {
 public:
  static constexpr size_t kMaxBufferedPerChannel = 2 << 20;
  static constexpr size_t kMaxPendingOutput = 1 << 20;

  class WsChannel : public Channel {
   public:
    WsChannel(WebSocketCore* core, unsigned char number, bool readable)
        : core_(core), number_(number), readable_(readable) {}
    size_t Read(char* buf, size_t len) override;
    bool Write(absl::string_view data) override;
    void Close() override {}  // the channel protocols have no server-side half-close
    void Cancel() override;

   private:
    friend class WebSocketCore;
    WebSocketCore* const core_;
    const unsigned char number_;
    const bool readable_;
    std::string inbound_;  // guarded by core_->mu_
    size_t offset_ = 0;
    bool ended_ = false;
    bool cancelled_ = false;
  };

  WebSocketCore(bool base64, bool close_signal, size_t channels, std::vector<bool> readable);
  virtual ~WebSocketCore() = default;

  WsChannel* channel(size_t i) { return channels_[i].get(); }
  // Client bytes buffered over all channels before the connection stops reading. Set before use.
  void set_max_buffered_input(size_t bytes) { max_buffered_input_ = bytes; }
  const absl::Notification& done() const { return done_; }

 protected:
  // Hands one received message to its channel. False when the peer sent something that is not a
  // valid message for the protocol (the connection then ends).
  bool DeliverLocked(absl::string_view message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ShouldPauseLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  virtual void ScheduleWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  virtual void ResumeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;

  const bool base64_;
  const bool close_signal_;
  size_t max_buffered_input_ = 4 << 20;
  std::vector<std::unique_ptr<WsChannel>> channels_;
  absl::Notification done_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<std::string> out_ ABSL_GUARDED_BY(mu_);
  size_t pending_output_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
};

// One accepted WebSocket over `Stream` (beast::tcp_stream or an ssl_stream of it).
template <class Stream>
class WebSocketConnection : public WebSocketCore,
                            public std::enable_shared_from_this<WebSocketConnection<Stream>> {
 public:
  WebSocketConnection(Stream stream, bool base64, bool close_signal, std::vector<bool> readable,
                      absl::Duration idle_timeout = absl::Hours(4))
      : WebSocketCore(base64, close_signal, readable.size(), readable),
        ws_(std::move(stream)),
        idle_timeout_(idle_timeout) {}

  // Completes the handshake answering `subprotocol` (empty: none), then calls `on_open` on the
  // executor. Call on the executor.
  void Accept(const boost::beast::http::request<boost::beast::http::string_body>& request,
              const std::string& subprotocol, std::function<void()> on_open) {
    namespace websocket = boost::beast::websocket;
    ws_.set_option(websocket::stream_base::timeout::suggested(boost::beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator([subprotocol](websocket::response_type& res) {
      if (!subprotocol.empty()) {
        res.set(boost::beast::http::field::sec_websocket_protocol, subprotocol);
      }
    }));
    ws_.read_message_max(kMaxWebSocketMessage);
    auto self = this->shared_from_this();
    ws_.async_accept(request, [self, on_open = std::move(on_open)](boost::beast::error_code ec) {
      if (ec) {
        PV_LOG(kInfo) << "streaming: WebSocket handshake failed: " << ec.message();
        absl::MutexLock lock(&self->mu_);
        self->CloseLocked();
        return;
      }
      self->Touch();
      self->ArmIdleTimer(self->idle_timeout_);
      self->ReadLoop();
      on_open();
    });
  }

  // Sends what is queued, a close frame, and closes (at the latest after `grace`). Any thread.
  void Finish(absl::Duration grace = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    if (closed_ || finishing_) return;
    finishing_ = true;
    ScheduleWriteLocked();
    auto self = this->shared_from_this();
    boost::asio::post(ws_.get_executor(), [self, grace] {
      self->timer_ = std::make_unique<boost::asio::steady_timer>(self->ws_.get_executor());
      self->timer_->expires_after(absl::ToChronoMilliseconds(grace));
      self->timer_->async_wait([self](const boost::system::error_code& ec) {
        if (ec) return;
        absl::MutexLock lock(&self->mu_);
        self->CloseLocked();
      });
    });
  }

  void Abort() {
    absl::MutexLock lock(&mu_);
    CloseLocked();
  }

  void SetCloseCallback(std::function<void()> callback) { close_callback_ = std::move(callback); }

 private:
  void Touch() { last_activity_ = std::chrono::steady_clock::now(); }

  // Closes the connection once no message went either way for the idle timeout. On the executor.
  void ArmIdleTimer(absl::Duration after) {
    if (!idle_timer_) idle_timer_ = std::make_unique<boost::asio::steady_timer>(ws_.get_executor());
    idle_timer_->expires_after(absl::ToChronoMilliseconds(after));
    idle_timer_->async_wait([self = this->shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      const auto idle = std::chrono::steady_clock::now() - self->last_activity_;
      const auto limit = absl::ToChronoNanoseconds(self->idle_timeout_);
      if (idle < limit) {
        self->ArmIdleTimer(absl::FromChrono(limit - idle));
        return;
      }
      PV_LOG(kInfo) << "streaming: closing a WebSocket connection idle for "
                    << absl::FormatDuration(self->idle_timeout_);
      absl::MutexLock lock(&self->mu_);
      self->CloseLocked();
    });
  }

  void ReadLoop() {
    auto self = this->shared_from_this();
    ws_.async_read(read_buffer_, [self](boost::beast::error_code ec, size_t) {
      absl::MutexLock lock(&self->mu_);
      if (self->closed_) return;
      if (ec) {
        self->CloseLocked();
        return;
      }
      self->Touch();
      std::string message = boost::beast::buffers_to_string(self->read_buffer_.data());
      self->read_buffer_.consume(self->read_buffer_.size());
      if (!self->DeliverLocked(message)) {
        PV_LOG(kWarning) << "streaming: ending WebSocket connection: malformed message";
        self->CloseLocked();
        return;
      }
      if (self->ShouldPauseLocked()) {
        self->read_paused_ = true;
      } else {
        // Outside the lock would be nicer, but async_read only initiates here.
        self->ReadLoop();
      }
    });
  }

  void ResumeReadLocked() override {
    if (!read_paused_ || closed_) return;
    read_paused_ = false;
    boost::asio::post(ws_.get_executor(), [self = this->shared_from_this()] { self->ReadLoop(); });
  }

  void ScheduleWriteLocked() override {
    if (write_scheduled_ || write_in_flight_ || closed_) return;
    write_scheduled_ = true;
    boost::asio::post(ws_.get_executor(), [self = this->shared_from_this()] { self->DoWrite(); });
  }

  void DoWrite() {
    absl::MutexLock lock(&mu_);
    write_scheduled_ = false;
    if (closed_ || write_in_flight_ || close_sent_) return;
    auto self = this->shared_from_this();
    if (out_.empty()) {
      if (!finishing_) return;
      close_sent_ = true;
      write_in_flight_ = true;
      ws_.async_close(boost::beast::websocket::close_code::normal,
                      [self](boost::beast::error_code) {
                        absl::MutexLock lock(&self->mu_);
                        self->write_in_flight_ = false;
                        self->CloseLocked();
                      });
      return;
    }
    writing_ = std::move(out_.front());
    out_.pop_front();
    write_in_flight_ = true;
    ws_.text(base64_);
    ws_.async_write(boost::asio::buffer(writing_), [self](boost::beast::error_code ec, size_t) {
      absl::MutexLock lock(&self->mu_);
      self->write_in_flight_ = false;
      if (!ec) self->Touch();
      self->pending_output_ -= std::min(self->pending_output_, self->writing_.size());
      self->writing_.clear();
      self->cv_.SignalAll();
      if (ec) {
        self->CloseLocked();
        return;
      }
      if (!self->out_.empty() || self->finishing_) self->ScheduleWriteLocked();
    });
  }

  void CloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return;
    closed_ = true;
    out_.clear();
    cv_.SignalAll();
    boost::asio::post(ws_.get_executor(), [self = this->shared_from_this()] {
      if (self->timer_) self->timer_->cancel();
      if (self->idle_timer_) self->idle_timer_->cancel();
      boost::beast::error_code ignored;
      auto& socket = boost::beast::get_lowest_layer(self->ws_).socket();
      socket.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
      if (!self->done_.HasBeenNotified()) self->done_.Notify();
      auto callback = std::move(self->close_callback_);
      self->close_callback_ = nullptr;
      if (callback) callback();
    });
  }

  boost::beast::websocket::stream<Stream> ws_;
  boost::beast::flat_buffer read_buffer_;
  std::string writing_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  const absl::Duration idle_timeout_;
  // On the executor only.
  std::unique_ptr<boost::asio::steady_timer> idle_timer_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
  std::function<void()> close_callback_;
  bool write_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool close_sent_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace podvisor::streaming
