#include "test/support/local_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "test/support/oci_image_builder.h"

namespace podvisor::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

bool ChildProcess::Start(const std::vector<std::string>& argv, const std::string& log_path) {
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::setpgid(0, 0);
    // Die with the test even if it never gets to kill us (a crash, std::terminate).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<char*> args;
    for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  pid_ = pid;
  return true;
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

bool WaitForPort(int port, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

LocalRegistry::LocalRegistry(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

bool LocalRegistry::Start(std::string* error) {
  std::filesystem::create_directories(dir_ + "/storage");
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort();
    std::ofstream cfg(dir_ + "/config.yml");
    cfg << "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        << "storage:\n  filesystem:\n    rootdirectory: " << dir_ << "/storage\n"
        << "  delete:\n    enabled: true\n"
        << "http:\n  addr: 127.0.0.1:" << port_ << "\n";
    if (!options_.tls_cert_file.empty()) {
      cfg << "  tls:\n    certificate: " << options_.tls_cert_file
          << "\n    key: " << options_.tls_key_file << "\n";
    }
    if (!options_.htpasswd_file.empty()) {
      cfg << "auth:\n  htpasswd:\n    realm: podvisor-test\n    path: " << options_.htpasswd_file
          << "\n";
    }
    cfg.close();
    if (!process_.Start({"docker-registry", "serve", dir_ + "/config.yml"},
                        dir_ + "/registry.log")) {
      *error = "cannot fork docker-registry";
      return false;
    }
    if (WaitForPort(port_, 20000)) return true;
    process_.Kill();
  }
  *error = "docker-registry did not listen: " + Log();
  return false;
}

std::string LocalRegistry::BlobDataPath(const std::string& digest) const {
  std::string hex = digest.substr(7);
  return dir_ + "/storage/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex +
         "/data";
}

std::string LocalRegistry::Log() const { return ReadAll(dir_ + "/registry.log"); }

TokenProxy::TokenProxy(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

bool TokenProxy::Start(std::string* error) {
  std::filesystem::create_directories(dir_);
  const std::string port_file = dir_ + "/proxy.port";
  std::filesystem::remove(port_file);
  if (!process_.Start(
          {"python3", std::string(PODVISOR_SOURCE_DIR) + "/test/integration/image/token_proxy.py",
           "--backend", options_.backend, "--user", options_.user, "--password", options_.password,
           "--refresh", options_.refresh, "--mode", options_.mode, "--port-file", port_file},
          dir_ + "/proxy.log")) {
    *error = "cannot fork python3";
    return false;
  }
  for (int i = 0; i < 400; ++i) {
    std::string text = ReadAll(port_file);
    if (!text.empty() && text.back() == '\n') {
      port_ = std::stoi(text);
      return WaitForPort(port_, 10000);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  *error = "token proxy did not start: " + Log();
  return false;
}

std::string TokenProxy::Log() const { return ReadAll(dir_ + "/proxy.log"); }

std::string MakeTestCertificates(const std::string& dir) {
  std::string out;
  std::ofstream(dir + "/san.cnf") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  const std::vector<std::vector<std::string>> steps = {
      {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
       "/CN=podvisor test CA", "-keyout", dir + "/ca-key.pem", "-out", dir + "/ca.pem"},
      {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
       dir + "/server-key.pem", "-out", dir + "/server.csr"},
      {"openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.pem", "-CAkey",
       dir + "/ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", dir + "/san.cnf", "-out",
       dir + "/server.pem"},
  };
  for (const auto& argv : steps) {
    if (Run(argv, &out) != 0) return out.empty() ? "openssl failed" : out;
  }
  return "";
}

}  // namespace podvisor::testing
