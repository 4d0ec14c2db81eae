#pragma once

// A small HTTP/1.1 server on 127.0.0.1:<ephemeral port> whose answers a test scripts: a
// registry that redirects, trickles bytes, lies about sizes or serves odd manifests. Every
// request is recorded. Bounded: it serves at most kMaxConnections connections, a trickle stops
// after kMaxTrickle, and the destructor ends everything.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace podvisor::testing {

class ScriptedHttpServer {
 public:
  struct Request {
    std::string method;
    std::string path;
    std::map<std::string, std::string> headers;  // names lower case
  };
  struct Response {
    int code = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    int64_t content_length = -1;  // announced length; -1: body.size()
    // > 0: the body is sent one byte per interval (as much of `body` as there is, then zeros
    // up to content_length), until the client goes or kMaxTrickle passes.
    absl::Duration trickle = absl::ZeroDuration();
    absl::Duration delay = absl::ZeroDuration();  // before answering
  };
  using Handler = std::function<Response(const Request&)>;

  static constexpr int kMaxConnections = 512;
  static constexpr absl::Duration kMaxTrickle = absl::Seconds(120);

  explicit ScriptedHttpServer(Handler handler);
  ~ScriptedHttpServer();
  ScriptedHttpServer(const ScriptedHttpServer&) = delete;
  ScriptedHttpServer& operator=(const ScriptedHttpServer&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string url() const { return "http://" + host(); }

  std::vector<Request> requests() const;
  // Trickled answers under way, and those the client ended by closing its connection.
  int trickling() const { return trickling_.load(); }
  int client_hang_ups() const { return hang_ups_.load(); }
  // The most requests that were being answered at once.
  int max_concurrent() const { return max_concurrent_.load(); }

 private:
  void AcceptLoop();
  void Serve(int fd);
  bool Answer(int fd, const Request& request);

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable absl::Mutex mu_;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connections_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> trickling_{0};
  std::atomic<int> hang_ups_{0};
  std::atomic<int> active_{0};
  std::atomic<int> max_concurrent_{0};
};

}  // namespace podvisor::testing
