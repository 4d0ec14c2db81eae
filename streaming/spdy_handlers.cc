#include "streaming/spdy_handlers.h"

#include <atomic>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace podvisor::streaming {
namespace {

using StreamPtr = std::shared_ptr<SpdyConnection::Stream>;

struct StreamFlags {
  bool tty, in, out, err;
};

StreamFlags FlagsOf(const RemoteCommandRequest& request) {
  return std::visit([](const auto& r) { return StreamFlags{r.tty, r.in, r.out, r.err}; },
                    request);
}

// Registers the connection with the tracker for Stop(), and unregisters it once closed.
void Track(const std::shared_ptr<SpdyConnection>& connection, ServerContext* context) {
  std::weak_ptr<SpdyConnection> weak = connection;
  uint64_t id = context->tracker.AddConnection([weak] {
    if (auto c = weak.lock()) c->Abort();
  });
  if (id == 0) {
    connection->Abort();
    return;
  }
  connection->SetCloseCallback([context, id] { context->tracker.RemoveConnection(id); });
}

// Collects the streams of one exec/attach session, then runs it on a thread of its own.
class RemoteCommandSpdy : public std::enable_shared_from_this<RemoteCommandSpdy> {
 public:
  RemoteCommandSpdy(std::shared_ptr<SpdyConnection> connection, RemoteCommandRequest request,
                    const std::string& protocol, ServerContext* context)
      : connection_(std::move(connection)),
        request_(std::move(request)),
        flags_(FlagsOf(request_)),
        context_(context) {
    format_ = protocol == kStreamProtocolV4 ? StatusFormat::kJson : StatusFormat::kText;
    resize_supported_ = protocol == kStreamProtocolV4 || protocol == kStreamProtocolV3;
    expected_ = 1 + flags_.in + flags_.out + flags_.err + (flags_.tty && resize_supported_);
  }

  void Start() {
    auto self = shared_from_this();
    timer_ = std::make_unique<boost::asio::steady_timer>(connection_->executor());
    timer_->expires_after(absl::ToChronoMilliseconds(context_->stream_creation_timeout));
    timer_->async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->started_) return;
      PV_LOG(kWarning) << "streaming: timed out waiting for the client to create streams";
      self->connection_->Abort();
    });
    connection_->Start([self](const StreamPtr& stream) { return self->OnStream(stream); });
  }

 private:
  // On the I/O thread.
  bool OnStream(const StreamPtr& stream) {
    if (started_) return false;
    const std::string type = stream->Header("streamtype");
    StreamPtr* slot = nullptr;
    bool wanted = false;
    if (type == "error") {
      slot = &error_, wanted = true;
    } else if (type == "stdin") {
      slot = &in_, wanted = flags_.in;
    } else if (type == "stdout") {
      slot = &out_, wanted = flags_.out;
    } else if (type == "stderr") {
      slot = &err_, wanted = flags_.err;
    } else if (type == "resize") {
      slot = &resize_, wanted = flags_.tty && resize_supported_;
    } else {
      PV_LOG(kWarning) << "streaming: refusing stream of unknown type \"" << type << "\"";
      return false;
    }
    if (*slot != nullptr) return false;  // a second stream of one type
    *slot = stream;
    if (wanted && ++received_ == expected_) {
      // Run after this stream's SYN_REPLY is queued: clients (spdystream) drop data that arrives
      // on a stream before its reply.
      started_ = true;
      boost::asio::post(connection_->executor(), [self = shared_from_this()] { self->Run(); });
    }
    return true;
  }

  void Run() {
    timer_->cancel();
    auto self = shared_from_this();
    bool spawned = context_->tracker.Spawn([self] {
      RemoteCommandChannels channels;
      channels.in = self->flags_.in ? self->in_.get() : nullptr;
      channels.out = self->flags_.out ? self->out_.get() : nullptr;
      channels.err = self->flags_.err ? self->err_.get() : nullptr;
      channels.error = self->error_.get();
      channels.resize = self->resize_.get();
      StreamingRuntime& runtime = *self->context_->runtime;
      const absl::Notification& done = self->connection_->done();
      if (const auto* exec = std::get_if<ExecRequest>(&self->request_)) {
        RunExec(runtime, *exec, channels, self->format_, done);
      } else {
        RunAttach(runtime, std::get<AttachRequest>(self->request_), channels, self->format_,
                  done);
      }
      self->connection_->Finish();
    });
    if (!spawned) connection_->Abort();
  }

  const std::shared_ptr<SpdyConnection> connection_;
  const RemoteCommandRequest request_;
  const StreamFlags flags_;
  ServerContext* const context_;
  StatusFormat format_;
  bool resize_supported_;
  int expected_;
  int received_ = 0;
  bool started_ = false;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  StreamPtr in_, out_, err_, error_, resize_;
};

// Pairs the data and error streams of each forwarded connection by requestID and runs each pair.
class PortForwardSpdy : public std::enable_shared_from_this<PortForwardSpdy> {
 public:
  PortForwardSpdy(std::shared_ptr<SpdyConnection> connection, PortForwardRequest request,
                  ServerContext* context)
      : connection_(std::move(connection)), request_(std::move(request)), context_(context) {}

  void Start() {
    auto self = shared_from_this();
    connection_->Start([self](const StreamPtr& stream) { return self->OnStream(stream); },
                       [self](uint32_t id) { self->OnReset(id); });
  }

 private:
  struct Pair {
    StreamPtr data, error;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };

  // A client reset a stream of a pair still waiting for its partner: drop the pair now (its
  // requestID may be used again), not when its timer fires.
  void OnReset(uint32_t id) {
    for (auto it = pairs_.begin(); it != pairs_.end(); ++it) {
      Pair& pair = it->second;
      const bool data = pair.data && pair.data->id() == id;
      if (!data && !(pair.error && pair.error->id() == id)) continue;
      if (pair.timer) pair.timer->cancel();
      if (StreamPtr& other = data ? pair.error : pair.data) other->Reset();
      pairs_.erase(it);
      return;
    }
  }

  bool OnStream(const StreamPtr& stream) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(stream->Header("port"), &port) || port < 1 || port > 65535) {
      PV_LOG(kWarning) << "streaming: port-forward stream without a valid port header";
      return false;
    }
    const std::string type = stream->Header("streamtype");
    if (type != "data" && type != "error") {
      PV_LOG(kWarning) << "streaming: port-forward stream of unknown type \"" << type << "\"";
      return false;
    }
    std::string request_id = stream->Header("requestid");
    if (request_id.empty()) {
      // Old clients: consecutive stream ids, error stream first.
      request_id = absl::StrCat(type == "error" ? stream->id() : stream->id() - 2);
    }
    auto existing = pairs_.find(request_id);
    if (existing == pairs_.end() &&
        pairs_.size() + running_->load() >= context_->max_forwards_per_connection) {
      PV_LOG(kWarning) << "streaming: refusing a forwarded connection: "
                       << context_->max_forwards_per_connection
                       << " already run or wait on this connection";
      return false;
    }
    Pair& pair = pairs_[request_id];
    StreamPtr& slot = type == "data" ? pair.data : pair.error;
    if (slot != nullptr) return false;
    slot = stream;
    if (pair.data != nullptr && pair.error != nullptr) {
      running_->fetch_add(1);  // counted from now: the next stream may come before Run
      // As for exec: start once this stream's SYN_REPLY is queued.
      boost::asio::post(connection_->executor(),
                        [self = shared_from_this(), port, data = std::move(pair.data),
                         error = std::move(pair.error)] {
                          self->Run(static_cast<int32_t>(port), data, error);
                        });
      if (pair.timer) pair.timer->cancel();
      pairs_.erase(request_id);
    } else if (!pair.timer) {
      ArmTimer(request_id, pair);
    }
    return true;
  }

  void ArmTimer(const std::string& request_id, Pair& pair) {
    pair.timer = std::make_unique<boost::asio::steady_timer>(connection_->executor());
    pair.timer->expires_after(absl::ToChronoMilliseconds(context_->stream_creation_timeout));
    std::weak_ptr<PortForwardSpdy> weak = shared_from_this();
    pair.timer->async_wait([weak, request_id](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      auto it = self->pairs_.find(request_id);
      if (it == self->pairs_.end()) return;
      PV_LOG(kWarning) << "streaming: port-forward request " << request_id
                       << " timed out waiting for its streams";
      if (it->second.data) it->second.data->Reset();
      if (it->second.error) it->second.error->Reset();
      self->pairs_.erase(it);
    });
  }

  void Run(int32_t port, StreamPtr data, StreamPtr error) {
    auto self = shared_from_this();
    bool spawned = context_->tracker.Spawn([self, port, data, error] {
      RunPortForward(*self->context_->runtime, self->request_.sandbox_id, port, *data,
                     error.get(), self->connection_->done());
      self->running_->fetch_sub(1);
    });
    if (!spawned) {
      running_->fetch_sub(1);
      PV_LOG(kWarning) << "streaming: refusing a forwarded connection: too many sessions";
      data->Reset();
      error->Reset();
    }
  }

  const std::shared_ptr<SpdyConnection> connection_;
  const PortForwardRequest request_;
  ServerContext* const context_;
  std::map<std::string, Pair> pairs_;  // on the I/O thread only
  // Forwards whose session runs (decremented on the session's thread).
  std::shared_ptr<std::atomic<size_t>> running_ = std::make_shared<std::atomic<size_t>>(0);
};

}  // namespace

void ServeRemoteCommandOverSpdy(const std::shared_ptr<SpdyConnection>& connection,
                                RemoteCommandRequest request, const std::string& protocol,
                                ServerContext* context) {
  Track(connection, context);
  auto handler =
      std::make_shared<RemoteCommandSpdy>(connection, std::move(request), protocol, context);
  handler->Start();
}

void ServePortForwardOverSpdy(const std::shared_ptr<SpdyConnection>& connection,
                              PortForwardRequest request, ServerContext* context) {
  Track(connection, context);
  auto handler = std::make_shared<PortForwardSpdy>(connection, std::move(request), context);
  handler->Start();
}

}  // namespace podvisor::streaming
