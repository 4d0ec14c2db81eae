#pragma once

// A real registry (Debian's docker-registry) on 127.0.0.1:<free port> with its storage in a
// temp dir, optionally with htpasswd basic auth or TLS; and the test suite's token proxy
// (test/integration/image/token_proxy.py) for bearer auth and broken transfers.

#include <sys/types.h>

#include <string>
#include <vector>

namespace podvisor::testing {

// A child process killed (SIGKILL) and reaped on destruction, and killed by the kernel if the
// thread that started it dies first.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { Kill(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  bool Start(const std::vector<std::string>& argv, const std::string& log_path);
  void Kill();
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

// A port on 127.0.0.1 that was free a moment ago.
int FreePort();
// Waits until 127.0.0.1:port accepts TCP connections.
bool WaitForPort(int port, int timeout_ms = 20000);

class LocalRegistry {
 public:
  struct Options {
    std::string htpasswd_file;  // basic auth when set
    std::string tls_cert_file;  // TLS when set (with tls_key_file)
    std::string tls_key_file;
  };
  // `dir` holds the config, storage and log.
  LocalRegistry(std::string dir, Options options);
  bool Start(std::string* error);
  void Stop() { process_.Kill(); }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // Where the registry keeps a blob's bytes (tests corrupt them).
  std::string BlobDataPath(const std::string& digest) const;
  std::string Log() const;

 private:
  std::string dir_;
  Options options_;
  int port_ = 0;
  ChildProcess process_;
};

// The bearer-token proxy in front of a registry: answers 401 with a Bearer challenge, issues
// tokens at /token for `user`/`password` (basic auth), or for the refresh token `refresh`
// (POST), and forwards authorised requests. Mode "truncate" cuts every blob answer in half and
// drops the connection (a registry going down mid-pull).
class TokenProxy {
 public:
  struct Options {
    std::string backend;  // http://127.0.0.1:PORT
    std::string user, password, refresh;
    std::string mode = "token";  // token | truncate
  };
  TokenProxy(std::string dir, Options options);
  bool Start(std::string* error);
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Log() const;

 private:
  std::string dir_;
  Options options_;
  int port_ = 0;
  ChildProcess process_;
};

// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI, in `dir`:
// ca.pem, server.pem, server-key.pem. Returns "" or the error output.
std::string MakeTestCertificates(const std::string& dir);

}  // namespace podvisor::testing
