#include "agent/port_forward.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "agent/async_writer.h"
#include "agent/server.h"

namespace podvisor::agent {
namespace {

// Both directions end separately (TCP half-close); the socket closes when both have.
struct Connection {
  std::mutex mu;
  int fd = -1;
  bool host_done = false;
  bool guest_done = false;

  void CloseIfDone() {
    if (host_done && guest_done && fd >= 0) {
      close(fd);
      fd = -1;
    }
  }
};

// The host's flow control of the guest-to-host direction (PortForwardRequest.window): bytes sent
// on the stream and not yet acknowledged are at most `window`; the socket is not read beyond.
class SendWindow {
 public:
  explicit SendWindow(uint64_t window) : window_(window) {}
  // Waits for room; how many bytes may be sent now (at most `max`), 0 once the stream is gone.
  size_t Acquire(size_t max) {
    if (window_ == 0) return max;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return gone_ || sent_ - acked_ < window_; });
    if (gone_) return 0;
    return static_cast<size_t>(std::min<uint64_t>(max, window_ - (sent_ - acked_)));
  }
  void Sent(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    sent_ += n;
  }
  // An acknowledgement, or AgentServer::kStreamGone.
  void Ack(uint64_t offset) {
    std::lock_guard<std::mutex> lock(mu_);
    if (offset == AgentServer::kStreamGone) {
      gone_ = true;
    } else {
      acked_ = std::max(acked_, std::min(offset, sent_));  // only what was sent
    }
    cv_.notify_all();
  }

 private:
  const uint64_t window_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t sent_ = 0;
  uint64_t acked_ = 0;
  bool gone_ = false;
};

// Reads the guest's socket and sends its bytes on `stream`, within the host's window.
void PumpSocket(AgentServer* server, const std::shared_ptr<Connection>& conn, int fd,
                uint32_t stream, const std::shared_ptr<SendWindow>& window) {
  char buf[64 * 1024];
  for (;;) {
    const size_t room = window->Acquire(sizeof(buf));
    if (room == 0) break;  // the host went away or closed the stream
    ssize_t n = recv(fd, buf, room, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    window->Sent(static_cast<size_t>(n));
    if (!server->SendStream(stream, std::string(buf, static_cast<size_t>(n)), false).ok()) break;
  }
  server->SendStream(stream, "", true);
  server->RemoveAckHandler(stream);
  std::lock_guard<std::mutex> lock(conn->mu);
  conn->guest_done = true;
  conn->CloseIfDone();
}

int ConnectLoopback(uint16_t port, int* err) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(port);
  v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&v4), sizeof(v4)) == 0) return fd;
  *err = errno;
  if (fd >= 0) close(fd);
  fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(port);
  v6.sin6_addr = in6addr_loopback;
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&v6), sizeof(v6)) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

}  // namespace

Error StartPortForward(AgentServer* server, const v1::PortForwardRequest& req) {
  if (req.port() == 0 || req.port() > 65535) return Error(Code::kInvalidArgument, "bad port");
  if (req.stream_id() == 0) return Error(Code::kInvalidArgument, "port forward needs a stream");
  int err = 0;
  int fd = ConnectLoopback(static_cast<uint16_t>(req.port()), &err);
  if (fd < 0) {
    return ErrnoError("connect to port " + std::to_string(req.port()) + " in the guest", err);
  }
  auto conn = std::make_shared<Connection>();
  conn->fd = fd;
  const uint32_t stream = req.stream_id();
  const int write_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (write_fd < 0) {
    close(fd);
    return ErrnoError("dup", errno);
  }
  auto writer = AsyncWriter::Start(write_fd, [conn](int fd) {
    shutdown(fd, SHUT_WR);
    std::lock_guard<std::mutex> lock(conn->mu);
    conn->host_done = true;
    conn->CloseIfDone();
  });
  server->AddStreamHandler(stream, [server, writer, stream](const std::string& data, bool eof) {
    writer->Write(data);
    if (eof) {
      writer->Finish();
      server->RemoveStreamHandler(stream);
    }
  });
  auto window = std::make_shared<SendWindow>(req.window() == 0 ? 0 : std::max(req.window(), 4096u));
  if (req.window() != 0) {
    server->AddAckHandler(stream, [window](uint64_t offset) { window->Ack(offset); });
  }
  std::thread([server, conn, fd, stream, window] {
    PumpSocket(server, conn, fd, stream, window);
  }).detach();
  return Error::Ok();
}

}  // namespace podvisor::agent
