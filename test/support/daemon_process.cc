#include "test/support/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/template_dir.h"
#include "hypervisor/capability_probes.h"

namespace podvisor::testing {

bool CanConnect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::set<pid_t> QemuProcessesUnder(const std::string& dir) {
  std::set<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = std::atoi(e.path().filename().c_str());
    if (pid <= 0 || pid == ::getpid()) continue;
    std::ifstream in(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find("qemu") != std::string::npos && cmd.find(dir) != std::string::npos) {
      out.insert(pid);
    }
  }
  return out;
}

int KillQemuUnder(const std::string& dir) {
  // A daemon killed while libvirt was starting QEMU leaves a child that may still be between
  // fork and exec (its command line not yet QEMU's) at the first scan: look again shortly after.
  std::set<pid_t> killed;
  for (int round = 0; round < 3; ++round) {
    if (round > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (pid_t pid : QemuProcessesUnder(dir)) {
      ::kill(pid, SIGKILL);
      killed.insert(pid);
    }
  }
  return static_cast<int>(killed.size());
}

std::string DaemonProcess::BinaryPath() { return std::string(PODVISOR_BIN_DIR) + "/podvisord"; }

DaemonProcess::DaemonProcess(Options options) : options_(std::move(options)) {
  if (options_.log_path.empty()) options_.log_path = options_.root_dir + ".podvisord.log";
}

DaemonProcess::~DaemonProcess() {
  Kill();
  // A daemon killed while libvirt probed QEMU's capabilities leaves the probe QEMU (-machine
  // none, daemonized) under its embedded libvirt root; the daemon's next start would kill it,
  // a test's end must. Only the probes: the pods' QEMUs outlive a daemon by design.
  if (!options_.state_dir.empty()) KillCapabilityProbes(options_.state_dir + "/libvirt", true);
  // A daemon killed while building a VM template leaves that template's QEMU; and templates in
  // the default directory (tests that set hypervisor.template_dir clean theirs) would outlive the
  // test on tmpfs.
  const std::string templates = DefaultTemplateDir(options_.state_dir);
  std::error_code ec;
  if (!std::filesystem::exists(templates, ec)) return;
  KillQemuUnder(templates);
  for (const auto& e : std::filesystem::directory_iterator(templates, ec)) {
    ::umount2((e.path() / "netns").c_str(), MNT_DETACH);  // a build's NIC namespace
  }
  std::filesystem::remove_all(templates, ec);
}

void DaemonProcess::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

bool DaemonProcess::Start(std::string* error, int timeout_ms) {
  std::vector<std::string> args = {BinaryPath(),
                                   "--root-dir", options_.root_dir,
                                   "--state-dir", options_.state_dir,
                                   "--listen", "unix://" + options_.socket_path};
  if (!options_.log_level.empty()) {
    args.push_back("--log-level");
    args.push_back(options_.log_level);
  }
  if (options_.config_path.empty()) {
    // Never pick up the host's /etc/podvisor/config.yaml.
    options_.config_path = options_.root_dir + ".config.yaml";
    std::ofstream(options_.config_path) << "hypervisor: {accel: tcg}\n";
  }
  args.push_back("--config");
  args.push_back(options_.config_path);
  if (!options_.metrics_address.empty()) {
    args.push_back("--metrics-address=" + options_.metrics_address);
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  pid_ = ::fork();
  if (pid_ < 0) {
    *error = "fork failed";
    return false;
  }
  if (pid_ == 0) {
    int log = ::open(options_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log >= 0) {
      ::dup2(log, 2);
      ::dup2(log, 1);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      *error = "podvisord exited during start (status " + std::to_string(status) + "): " + ReadLog();
      return false;
    }
    if (CanConnect(options_.socket_path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *error = "podvisord did not listen within the timeout: " + ReadLog();
  Kill();
  return false;
}

int DaemonProcess::WaitExit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

int DaemonProcess::Stop(int timeout_ms) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int code = WaitExit(timeout_ms);
  if (code < 0) Kill();
  return code;
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  pid_ = -1;
}

std::string DaemonProcess::ReadLog() const {
  std::ifstream in(options_.log_path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace podvisor::testing
