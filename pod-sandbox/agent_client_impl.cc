// AgentClient over a stream socket: one reader thread per channel decodes frames, completes
// calls, delivers stream bytes and events, sends heartbeats and expires deadlines.
#include "pod-sandbox/agent_client_impl.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/agent_frame.h"
#include "pod-sandbox/agent_wire.h"

namespace podvisor {
namespace agent_client_internal {
namespace {

v1::Response::ResultCase ExpectedResult(v1::Request::CallCase call) {
  switch (call) {
    case v1::Request::kHello:
      return v1::Response::kHello;
    case v1::Request::kPing:
      return v1::Response::kPing;
    case v1::Request::kStartContainer:
    case v1::Request::kExecProcess:
      return v1::Response::kProcessStarted;
    case v1::Request::kWaitProcess:
      return v1::Response::kExitStatus;
    case v1::Request::kStats:
      return v1::Response::kStats;
    case v1::Request::kDiskAttached:
      return v1::Response::kDiskAttached;
    case v1::Request::kAttachOutput:
      return v1::Response::kAttachOutput;
    case v1::Request::kInspect:
      return v1::Response::kInspect;
    case v1::Request::kListContainers:
      return v1::Response::kContainers;
    // Every call is listed (no default): a new one must say what it answers, or -Wswitch fails
    // the build, rather than every answer to it closing the channel as "of the wrong type".
    case v1::Request::kSetupSandbox:
    case v1::Request::kSetupNetwork:
    case v1::Request::kCreateContainer:
    case v1::Request::kSignalProcess:
    case v1::Request::kRemoveContainer:
    case v1::Request::kResizeTty:
    case v1::Request::kPortForward:
    case v1::Request::kDiskDetach:
    case v1::Request::kShutdown:
    case v1::Request::kCloseStream:
    case v1::Request::kUpdateContainerResources:
    case v1::Request::kUpdatePodResources:
    case v1::Request::CALL_NOT_SET:
      return v1::Response::kEmpty;
  }
  return v1::Response::kEmpty;
}

// The calls whose guest step timings are logged, by name.
const char* CallName(v1::Request::CallCase call) {
  switch (call) {
    case v1::Request::kCreateContainer:
      return "CreateContainer";
    case v1::Request::kStartContainer:
      return "StartContainer";
    case v1::Request::kSignalProcess:
      return "SignalProcess";
    case v1::Request::kRemoveContainer:
      return "RemoveContainer";
    case v1::Request::kExecProcess:
      return "ExecProcess";
    case v1::Request::kDiskAttached:
      return "DiskAttached";
    case v1::Request::kDiskDetach:
      return "DiskDetach";
    default:
      return "call";
  }
}

// "crun create 812.4 ms, read pid 0.1 ms"
std::string FormatTimings(const v1::Response& r) {
  std::string out;
  for (const v1::StepTiming& t : r.timings()) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", t.step(), " ",
                    absl::SixDigits(static_cast<double>(t.duration_ns()) / 1e6), " ms");
  }
  return out;
}

}  // namespace

AgentClientImpl::AgentClientImpl(int fd, Options options) : fd_(fd), options_(std::move(options)) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // Ids start at a random point: a response to a call made before a reconnect can then not
  // be mistaken for one of ours.
  std::random_device rd;
  next_id_ = ((uint64_t{rd()} << 32) | rd()) & 0x3fffffffffffffffull;
  if (next_id_ == 0) next_id_ = 1;
  // Stream ids too: bytes a guest still sends on a previous daemon's streams must not land
  // on ours.
  next_stream_ = (rd() & 0x3fffffffu) | 1u;
}

AgentClientImpl::~AgentClientImpl() {
  Close();
  if (reader_.joinable()) {
    if (reader_.get_id() == std::this_thread::get_id()) {
      reader_.detach();  // destroyed from a callback: the thread exits on its own
    } else {
      reader_.join();
    }
  }
  if (fd_ >= 0) close(fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status AgentClientImpl::Start() {
  if (wake_fd_ < 0) return absl::InternalError("eventfd failed");
  int flags = fcntl(fd_, F_GETFL);
  if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("set O_NONBLOCK: ", strerror(errno)));
  }
  reader_ = std::thread([this] { ReaderLoop(); });
  return Handshake();
}

absl::StatusOr<v1::Response> AgentClientImpl::Call(const v1::Request& req, absl::Duration timeout) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<CallResult> result;
  };
  auto waiter = std::make_shared<Waiter>();
  CallAsync(req, timeout, [waiter](CallResult r) {
    std::lock_guard<std::mutex> lock(waiter->mu);
    waiter->result = std::move(r);
    waiter->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(waiter->mu);
  waiter->cv.wait(lock, [&] { return waiter->result.has_value(); });
  return std::move(*waiter->result);
}

void AgentClientImpl::CallAsync(const v1::Request& req, absl::Duration timeout,
                                CallCallback callback) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.call_timeout;
  v1::Frame frame;
  *frame.mutable_request() = req;
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dead_) {
      id = next_id_++;
      pending_[id] = Pending{ExpectedResult(req.call_case()), req.call_case(),
                             absl::Now() + timeout, std::move(callback)};
    } else {
      id = 0;
    }
  }
  if (id == 0) {
    absl::Status why;
    {
      std::lock_guard<std::mutex> lock(mu_);
      why = dead_status_;
    }
    callback(absl::UnavailableError(absl::StrCat("agent channel is closed: ", why.message())));
    return;
  }
  frame.set_id(id);
  Wake();  // the reader recomputes its poll timeout
  if (absl::Status s = Send(frame); !s.ok()) {
    CallCallback cb = TakePending(id);
    if (cb) cb(s);
  }
}

CallCallback AgentClientImpl::TakePending(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return nullptr;
  CallCallback cb = std::move(it->second.callback);
  pending_.erase(it);
  return cb;
}

absl::Status AgentClientImpl::Send(const v1::Frame& frame) {
  std::string payload = frame.SerializeAsString();
  if (payload.size() > kAgentMaxFrameBytes) {
    return absl::InvalidArgumentError("request larger than the 4 MiB frame limit");
  }
  const std::string bytes = EncodeAgentFrame(payload);
  std::lock_guard<std::mutex> lock(write_mu_);
  const absl::Time deadline = absl::Now() + options_.dead_after;
  size_t done = 0;
  while (done < bytes.size()) {
    if (dead_) return absl::UnavailableError("agent channel is closed");
    ssize_t n = send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        absl::Status s = absl::UnavailableError("the guest stopped reading its channel");
        Fail(s);
        return s;
      }
      pollfd p{fd_, POLLOUT, 0};
      poll(&p, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 100)));
      continue;
    }
    absl::Status s = absl::UnavailableError(absl::StrCat("write to the agent: ", strerror(errno)));
    Fail(s);
    return s;
  }
  return absl::OkStatus();
}

void AgentClientImpl::Fail(const absl::Status& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (dead_) return;
    dead_status_ = why;
    dead_ = true;
  }
  Wake();
}

absl::Status AgentClientImpl::Handshake() {
  // The guest discards bytes that arrive before its agent opens the port, so the Hello is
  // repeated until one is answered.
  const absl::Time deadline = absl::Now() + options_.handshake_timeout;
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<CallResult> result;
  };
  auto state = std::make_shared<State>();
  absl::Duration retry = absl::Milliseconds(250);
  for (;;) {
    v1::Request req;
    req.mutable_hello()->set_max_version(v1::PROTOCOL_VERSION_1);
    req.mutable_hello()->set_min_version(v1::PROTOCOL_VERSION_1);
    req.mutable_hello()->set_host_version(options_.host_version);
    const absl::Duration left = deadline - absl::Now();
    CallAsync(req, left, [state](CallResult r) {
      std::lock_guard<std::mutex> lock(state->mu);
      // The first answer wins; a deadline expiry only counts when nothing else came.
      if (state->result && state->result->ok()) return;
      if (!r.ok() && r.status().code() == absl::StatusCode::kDeadlineExceeded && state->result) {
        return;
      }
      state->result = std::move(r);
      state->cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(state->mu);
    state->cv.wait_for(lock, absl::ToChronoMilliseconds(std::min(retry, left)),
                       [&] { return state->result.has_value(); });
    if (state->result) break;
    if (absl::Now() >= deadline) {
      state->cv.wait(lock, [&] { return state->result.has_value(); });
      break;
    }
    retry = std::min(retry * 2, absl::Seconds(2));
  }
  CallResult r = *state->result;
  if (!r.ok()) {
    Fail(r.status());
    return WithContext(r.status(), "agent handshake");
  }
  if (r->hello().version() != v1::PROTOCOL_VERSION_1) {
    absl::Status s = absl::FailedPreconditionError(
        absl::StrCat("agent handshake: agent chose unsupported protocol version ",
                     static_cast<int>(r->hello().version())));
    Fail(s);
    return s;
  }
  info_ = ToAgentInfo(r->hello());
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_rx_ = absl::Now();
    heartbeat_ = true;
  }
  PV_LOG(kDebug) << "agent " << info_.agent_version << " on kernel " << info_.kernel_release;
  return absl::OkStatus();
}

void AgentClientImpl::ReaderLoop() {
  AgentFrameDecoder decoder;
  std::string buf(64 * 1024, '\0');
  absl::Time last_ping = absl::Now();
  absl::Time last_loop = absl::Now();
  while (!dead_) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    poll(fds, 2, 100);
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_fd_, &v, sizeof(v));
    }
    if (dead_) break;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n == 0) {
        Fail(absl::UnavailableError("the agent closed its channel"));
        break;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        Fail(absl::UnavailableError(absl::StrCat("read from the agent: ", strerror(errno))));
        break;
      }
      if (n > 0) {
        absl::string_view bytes(buf.data(), static_cast<size_t>(n));
        std::string aligned;
        absl::Status s = absl::OkStatus();
        if (!synced_) {
          s = Resync(bytes, &aligned);
          bytes = aligned;
        }
        if (s.ok() && !bytes.empty()) s = decoder.Feed(bytes);
        if (!s.ok()) {
          Fail(s);
          break;
        }
        while (std::optional<std::string> payload = decoder.Next()) {
          if (absl::Status s = HandlePayload(*payload); !s.ok()) {
            Fail(s);
            break;
          }
        }
        if (!decoder.status().ok()) Fail(decoder.status());
      }
    }
    const absl::Time now = absl::Now();
    if (now - last_loop > options_.heartbeat_interval) {
      // This thread was held up (a slow callback, a stopped daemon): the guest's silence
      // since then is not its fault, so it gets a fresh window.
      std::lock_guard<std::mutex> lock(mu_);
      last_rx_ = std::max(last_rx_, now - options_.heartbeat_interval);
    }
    last_loop = now;
    ExpireCalls(now);
    Heartbeat(now, &last_ping);
  }
  Drain();
}

absl::Status AgentClientImpl::Resync(absl::string_view bytes, std::string* aligned) {
  constexpr size_t kMaxSkipped = 8u << 20;
  constexpr uint32_t kMaxAnswer = 64 * 1024;  // a Hello answer is far smaller
  unsynced_.append(bytes.data(), bytes.size());
  bool all_final = true;  // every offset before i was looked at for good
  for (size_t i = scan_from_; i + kAgentFrameHeaderBytes <= unsynced_.size(); ++i) {
    const auto* h = reinterpret_cast<const unsigned char*>(unsynced_.data() + i);
    const uint32_t len =
        (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | uint32_t{h[3]};
    if (len == 0 || len > kMaxAnswer) {
      if (all_final) scan_from_ = i + 1;
      continue;
    }
    if (i + kAgentFrameHeaderBytes + len > unsynced_.size()) {
      all_final = false;  // may complete with more bytes
      continue;
    }
    v1::Frame frame;
    bool ours = frame.ParseFromArray(unsynced_.data() + i + kAgentFrameHeaderBytes,
                                     static_cast<int>(len)) &&
                frame.body_case() == v1::Frame::kResponse;
    if (ours) {
      std::lock_guard<std::mutex> lock(mu_);
      ours = pending_.contains(frame.id());
    }
    if (ours) {
      if (i > 0) PV_LOG(kDebug) << "agent channel: skipped " << i << " bytes of an old session";
      synced_ = true;
      aligned->assign(unsynced_, i, std::string::npos);
      std::string().swap(unsynced_);
      return absl::OkStatus();
    }
    if (all_final) scan_from_ = i + 1;
  }
  if (unsynced_.size() > kMaxSkipped) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid frame from the guest: no answer to the handshake in the first ",
                     unsynced_.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status AgentClientImpl::HandlePayload(const std::string& payload) {
  absl::StatusOr<v1::Frame> frame = ParseGuestFrame(payload);
  if (!frame.ok()) return frame.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_rx_ = absl::Now();
  }
  switch (frame->body_case()) {
    case v1::Frame::kResponse: {
      v1::Response::ResultCase expected;
      v1::Request::CallCase call;
      CallCallback cb;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = pending_.find(frame->id());
        if (it == pending_.end()) return absl::OkStatus();  // expired or from before
        expected = it->second.expected;
        call = it->second.call;
        cb = std::move(it->second.callback);
        pending_.erase(it);
      }
      const v1::Response& r = frame->response();
      if (r.timings_size() > 0) {
        PV_LOG(kDebug) << "agent " << CallName(call) << " in the guest: " << FormatTimings(r);
      }
      if (r.status().code() != v1::OK) {
        cb(FromWireStatus(r.status()));
      } else if (r.result_case() != expected) {
        absl::Status s =
            absl::InvalidArgumentError("invalid frame from the guest: response of the wrong type");
        cb(absl::UnavailableError(s.message()));
        return s;
      } else {
        cb(std::move(*frame->mutable_response()));
      }
      return absl::OkStatus();
    }
    case v1::Frame::kStream: {
      StreamCallback cb;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = streams_.find(frame->stream().stream_id());
        if (it == streams_.end()) return absl::OkStatus();  // closed here already
        cb = it->second;
        if (frame->stream().eof()) streams_.erase(it);
      }
      cb(frame->stream().data(), frame->stream().eof());
      return absl::OkStatus();
    }
    case v1::Frame::kEvent:
      if (options_.on_event) options_.on_event(ToAgentEvent(frame->event()));
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("invalid frame from the guest");
  }
}

void AgentClientImpl::ExpireCalls(absl::Time now) {
  std::vector<CallCallback> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second.callback));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& cb : expired) cb(absl::DeadlineExceededError("agent did not answer in time"));
}

void AgentClientImpl::Heartbeat(absl::Time now, absl::Time* last_ping) {
  absl::Time last_rx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!heartbeat_) return;
    last_rx = last_rx_;
  }
  if (now - last_rx > options_.dead_after) {
    Fail(absl::UnavailableError(
        absl::StrCat("the agent sent nothing for ", absl::FormatDuration(now - last_rx))));
    return;
  }
  if (now - *last_ping >= options_.heartbeat_interval) {
    *last_ping = now;
    v1::Request req;
    req.mutable_ping()->set_nonce(0);
    // Sent from the reader thread: Send() gives up after dead_after, so this cannot hang.
    CallAsync(req, options_.dead_after, [](CallResult) {});
  }
}

void AgentClientImpl::Drain() {
  std::map<uint64_t, Pending> pending;
  std::map<uint32_t, StreamCallback> streams;
  absl::Status why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending.swap(pending_);
    streams.swap(streams_);
    why = dead_status_;
  }
  shutdown(fd_, SHUT_RDWR);
  const absl::Status closed =
      absl::UnavailableError(absl::StrCat("agent channel is closed: ", why.message()));
  for (auto& [id, p] : pending) p.callback(closed);
  for (auto& [id, cb] : streams) cb("", true);
  if (why.code() != absl::StatusCode::kCancelled) {
    PV_LOG(kWarning) << "agent channel lost: " << why.message();
  }
  if (options_.on_disconnect) options_.on_disconnect(why);
}

}  // namespace agent_client_internal

using agent_client_internal::AgentClientImpl;

absl::StatusOr<std::unique_ptr<AgentClient>> AgentClient::Adopt(int fd, Options options) {
  auto client = std::make_unique<AgentClientImpl>(fd, std::move(options));
  if (absl::Status s = client->Start(); !s.ok()) return s;
  return std::unique_ptr<AgentClient>(std::move(client));
}

absl::StatusOr<std::unique_ptr<AgentClient>> AgentClient::Connect(const std::string& socket_path,
                                                                  Options options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("bad agent socket path \"" + socket_path + "\"");
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      absl::StatusOr<std::unique_ptr<AgentClient>> c = Adopt(fd, std::move(options));
      if (!c.ok()) {
        return absl::Status(c.status().code(),
                            absl::StrCat(socket_path, ": ", c.status().message()));
      }
      return c;
    }
    const int err = errno;
    close(fd);
    if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN) {
      return absl::UnavailableError(
          absl::StrCat("connect to agent socket ", socket_path, ": ", strerror(err)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("connect to agent socket ", socket_path, ": ",
                                                      strerror(err), " until the timeout"));
    }
    usleep(20 * 1000);
  }
}

}  // namespace podvisor
