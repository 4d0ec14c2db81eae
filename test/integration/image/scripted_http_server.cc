#include "test/integration/image/scripted_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace podvisor::testing {
namespace {

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

const char* Reason(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 307:
      return "Temporary Redirect";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    default:
      return "Status";
  }
}

}  // namespace

ScriptedHttpServer::ScriptedHttpServer(Handler handler) : handler_(std::move(handler)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return;
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

ScriptedHttpServer::~ScriptedHttpServer() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(connections_);
  }
  for (std::thread& t : threads) t.join();
}

std::vector<ScriptedHttpServer::Request> ScriptedHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void ScriptedHttpServer::AcceptLoop() {
  int served = 0;
  while (!stop_ && served < kMaxConnections) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++served;
    absl::MutexLock lock(&mu_);
    fds_.push_back(fd);
    connections_.emplace_back([this, fd] { Serve(fd); });
  }
}

void ScriptedHttpServer::Serve(int fd) {
  std::string buffer;
  char chunk[8192];
  while (!stop_) {
    size_t end = buffer.find("\r\n\r\n");
    if (end == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
      continue;
    }
    Request request;
    std::vector<std::string> lines = absl::StrSplit(buffer.substr(0, end), "\r\n");
    buffer.erase(0, end + 4);
    std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
    if (first.size() < 2) break;
    request.method = first[0];
    request.path = first[1];
    int64_t body_length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      size_t colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
      request.headers[name] = std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
    if (auto it = request.headers.find("content-length"); it != request.headers.end()) {
      (void)absl::SimpleAtoi(it->second, &body_length);
    }
    while (static_cast<int64_t>(buffer.size()) < body_length) {
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    buffer.erase(0, std::min<size_t>(buffer.size(), static_cast<size_t>(body_length)));
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(request);
    }
    if (!Answer(fd, request)) break;
  }
  ::shutdown(fd, SHUT_RDWR);
  absl::MutexLock lock(&mu_);
  fds_.erase(std::remove(fds_.begin(), fds_.end(), fd), fds_.end());
  ::close(fd);
}

bool ScriptedHttpServer::Answer(int fd, const Request& request) {
  const int now = ++active_;
  for (int seen = max_concurrent_.load(); now > seen;) {
    if (max_concurrent_.compare_exchange_weak(seen, now)) break;
  }
  struct Done {
    std::atomic<int>& a;
    ~Done() { --a; }
  } done{active_};
  Response r = handler_(request);
  if (r.delay > absl::ZeroDuration()) absl::SleepFor(r.delay);
  const int64_t length =
      r.content_length >= 0 ? r.content_length : static_cast<int64_t>(r.body.size());
  std::string head = absl::StrCat("HTTP/1.1 ", r.code, " ", Reason(r.code), "\r\n");
  for (const auto& [name, value] : r.headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  absl::StrAppend(&head, "Content-Length: ", length, "\r\n\r\n");
  if (!SendAll(fd, head.data(), head.size())) return false;
  if (request.method == "HEAD") return true;
  if (r.trickle <= absl::ZeroDuration()) {
    return SendAll(fd, r.body.data(), std::min<size_t>(r.body.size(), length)) &&
           length <= static_cast<int64_t>(r.body.size());
  }
  ++trickling_;
  const absl::Time until = absl::Now() + kMaxTrickle;
  bool ok = true;
  for (int64_t i = 0; i < length && !stop_ && absl::Now() < until; ++i) {
    char c = i < static_cast<int64_t>(r.body.size()) ? r.body[i] : '\0';
    if (!SendAll(fd, &c, 1)) {
      ok = false;
      break;
    }
    // A client that went away shows as a readable end of stream (or an error) here.
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(r.trickle))) > 0) {
      char probe;
      if (::recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
        ok = false;
        break;
      }
    }
  }
  --trickling_;
  if (!ok) ++hang_ups_;
  return false;  // a trickled answer ends the connection
}

}  // namespace podvisor::testing
