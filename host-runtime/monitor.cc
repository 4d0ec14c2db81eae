#include "host-runtime/monitor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/status_util.h"
#include "host-runtime/child.h"
#include "host-runtime/unix_path.h"
#include "nlohmann/json.hpp"
#include "pod-sandbox/container_log_writer.h"

namespace podvisor::host {
namespace {

// After the container's init exited, how long the output of processes it left may trail.
constexpr absl::Duration kDrainAfterExit = absl::Seconds(2);
// What an attach client may have waiting to be sent before it is dropped (a client that does
// not read must not hold the container's output, nor the monitor's memory).
constexpr size_t kMaxClientBacklog = 4 * 1024 * 1024;
constexpr size_t kMaxCommandLine = 256;

void Fail(int sync_fd, const std::string& message) {
  if (sync_fd < 0) return;
  std::string line = absl::StrCat("error ", message, "\n");
  ssize_t n = ::write(sync_fd, line.data(), line.size());
  (void)n;
}

std::string Frame(MonitorFrame type, absl::string_view data) {
  std::string f(5, '\0');
  f[0] = static_cast<char>(type);
  const uint32_t n = static_cast<uint32_t>(data.size());
  f[1] = static_cast<char>(n >> 24);
  f[2] = static_cast<char>(n >> 16);
  f[3] = static_cast<char>(n >> 8);
  f[4] = static_cast<char>(n);
  f.append(data.data(), data.size());
  return f;
}

struct Client {
  int fd = -1;
  bool attached = false;
  std::string in;   // bytes received, not yet parsed
  std::string out;  // bytes to send
};

class Monitor {
 public:
  explicit Monitor(const MonitorOptions& o) : o_(o) {}
  int Run();

 private:
  absl::Status Setup();
  absl::Status Create();
  absl::Status CreateWithTerminal();
  absl::Status ReadContainerPid();
  absl::Status WaitForCreate(pid_t pid, int err_fd);
  void WriteStdin(absl::string_view data);
  void Loop();
  void OnOutput(int index);
  void OnSignal();
  void CheckReaped();
  void OnAccept();
  void OnClient(int fd, short revents);
  void HandleCommand(Client& c, const std::string& line);
  void HandleFrames(Client& c);
  void Broadcast(const std::string& frame);
  void Flush(Client& c);
  void DropClient(int fd);
  void Finish();

  const MonitorOptions& o_;
  std::unique_ptr<ContainerLogWriter> log_;
  int out_[2] = {-1, -1};  // read ends of the container's stdout / stderr
  int stdin_w_ = -1;       // write end of the container's stdin
  int sigfd_ = -1;
  int listen_fd_ = -1;
  pid_t container_ = -1;
  std::map<int, Client> clients_;
  bool exited_ = false;
  int status_ = 0;
  absl::Time exited_at_;
};

absl::Status Monitor::Setup() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return ErrnoStatus("become subreaper", errno);
  if (absl::Status s = WriteFileAtomic(o_.dir + "/monitor.pid", absl::StrCat(::getpid(), "\n"));
      !s.ok()) {
    return s;
  }
  if (!o_.log_path.empty()) {
    auto log = ContainerLogWriter::Open(o_.log_path);
    if (!log.ok()) return log.status();
    log_ = std::move(*log);
  }
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  sigfd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd_ < 0) return ErrnoStatus("signalfd", errno);
  absl::StatusOr<int> listen = ListenUnix(o_.dir, "ctl.sock");
  if (!listen.ok()) return listen.status();
  listen_fd_ = *listen;
  return absl::OkStatus();
}

// Waits for the create command; its failure carries what it wrote on `err_fd`.
absl::Status Monitor::WaitForCreate(pid_t pid, int err_fd) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  std::string why;
  char buf[4096];
  ::fcntl(err_fd, F_SETFL, O_NONBLOCK);
  ssize_t n = ::read(err_fd, buf, sizeof buf);
  if (n > 0) why.assign(buf, static_cast<size_t>(n));
  return absl::FailedPreconditionError(absl::StrCat(
      o_.create_argv[0], " create exited with status ",
      WIFEXITED(status) ? WEXITSTATUS(status) : -1, ": ", absl::StripAsciiWhitespace(why)));
}

// crun creates the pty and sends its master to our console socket before it exits; the master
// is then the container's stdout (the terminal merges stderr into it) and, when kept, stdin.
absl::Status Monitor::CreateWithTerminal() {
  absl::StatusOr<int> listen = ListenUnix(o_.dir, "console.sock");
  if (!listen.ok()) return WithContext(listen.status(), "console socket");
  absl::Cleanup close_listen = [&] {
    ::close(*listen);
    ::unlink((o_.dir + "/console.sock").c_str());
  };
  // crun connects by path: one through our descriptor of the directory always fits.
  const int dir_fd = ::open(o_.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus("open " + o_.dir, errno);
  absl::Cleanup close_dir = [dir_fd] { ::close(dir_fd); };
  std::vector<std::string> argv = o_.create_argv;
  argv.insert(argv.end() - 1, {"--console-socket", absl::StrCat("/proc/", ::getpid(), "/fd/",
                                                                dir_fd, "/console.sock")});
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  absl::StatusOr<pid_t> spawned = SpawnChild(argv, -1, -1, err[1]);
  ::close(err[1]);
  absl::Cleanup close_err = [fd = err[0]] { ::close(fd); };
  if (!spawned.ok()) return spawned.status();
  if (absl::Status s = WaitForCreate(*spawned, err[0]); !s.ok()) return s;
  // crun has exited: its connection, with the master, is already queued.
  const int conn = ::accept4(*listen, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return ErrnoStatus("the runtime sent no terminal", errno);
  absl::StatusOr<int> master = ReceiveDescriptor(conn);
  ::close(conn);
  if (!master.ok()) return WithContext(master.status(), "the runtime's terminal");
  out_[0] = *master;
  if (o_.stdin) {
    stdin_w_ = ::fcntl(*master, F_DUPFD_CLOEXEC, 0);
    if (stdin_w_ < 0) return ErrnoStatus("dup the terminal", errno);
  }
  return absl::OkStatus();
}

absl::Status Monitor::Create() {
  if (o_.tty) {
    if (absl::Status s = CreateWithTerminal(); !s.ok()) return s;
    return ReadContainerPid();
  }
  int out[2], err[2], in[2] = {-1, -1};
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    return ErrnoStatus("pipe", errno);
  }
  if (o_.stdin && ::pipe2(in, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  absl::StatusOr<pid_t> spawned = SpawnChild(o_.create_argv, in[0], out[1], err[1]);
  if (!spawned.ok()) return spawned.status();
  const pid_t pid = *spawned;
  ::close(out[1]);
  ::close(err[1]);
  if (o_.stdin) {
    ::close(in[0]);
    stdin_w_ = in[1];
  }
  out_[0] = out[0];
  out_[1] = err[0];
  // The runtime's own complaint is on what would have been the container's stderr.
  if (absl::Status s = WaitForCreate(pid, out_[1]); !s.ok()) return s;
  return ReadContainerPid();
}

absl::Status Monitor::ReadContainerPid() {
  absl::StatusOr<std::string> pid_text = ReadFile(o_.pid_file);
  int64_t cpid = 0;
  if (!pid_text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*pid_text), &cpid) ||
      cpid <= 1) {
    return absl::InternalError(absl::StrCat("no container pid in ", o_.pid_file));
  }
  container_ = static_cast<pid_t>(cpid);
  for (int fd : out_) {
    if (fd >= 0) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  }
  return absl::OkStatus();
}

void Monitor::Broadcast(const std::string& frame) {
  std::vector<int> drop;
  for (auto& [fd, c] : clients_) {
    if (!c.attached) continue;
    if (c.out.size() + frame.size() > kMaxClientBacklog) {
      drop.push_back(fd);
      continue;
    }
    c.out += frame;
    Flush(c);
  }
  for (int fd : drop) DropClient(fd);
}

void Monitor::Flush(Client& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) return;
    c.out.erase(0, static_cast<size_t>(n));
  }
}

void Monitor::DropClient(int fd) {
  ::close(fd);
  clients_.erase(fd);
}

void Monitor::OnOutput(int index) {
  char buf[kMaxMonitorFrame];
  const LogStream stream = index == 0 ? LogStream::kStdout : LogStream::kStderr;
  const MonitorFrame type = index == 0 ? MonitorFrame::kStdout : MonitorFrame::kStderr;
  ssize_t n = ::read(out_[index], buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    ::close(out_[index]);
    out_[index] = -1;
    if (log_) (void)log_->CloseStream(stream);
    Broadcast(Frame(type, ""));
    return;
  }
  absl::string_view data(buf, static_cast<size_t>(n));
  if (log_) {
    if (absl::Status s = log_->Write(stream, data); !s.ok()) {
      std::fprintf(stderr, "podvisor-monitor %s: log: %s\n", o_.id.c_str(),
                   std::string(s.message()).c_str());
    }
  }
  Broadcast(Frame(type, data));
}

void Monitor::OnSignal() {
  signalfd_siginfo si;
  while (::read(sigfd_, &si, sizeof si) == sizeof si) {
  }
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == container_ && !exited_) {
      exited_ = true;
      status_ = status;
      exited_at_ = absl::Now();
    }
  }
}

// A container that exited before it became the monitor's child (its creator reaped it) is
// nobody's to wait for: it is gone, with its status unknown.
void Monitor::CheckReaped() {
  int status = 0;
  pid_t r = ::waitpid(container_, &status, WNOHANG);
  if (r == container_ || (r < 0 && errno == ECHILD)) {
    exited_ = true;
    status_ = r == container_ ? status : (255 << 8);
    exited_at_ = absl::Now();
  }
}

void Monitor::OnAccept() {
  int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  ucred cred{};
  socklen_t len = sizeof cred;
  // Only root (podvisord) may reopen logs or attach.
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
    ::close(fd);
    return;
  }
  Client c;
  c.fd = fd;
  clients_[fd] = std::move(c);
}

void Monitor::HandleCommand(Client& c, const std::string& line) {
  if (line == "reopen") {
    absl::Status s = log_ ? log_->Reopen() : absl::OkStatus();
    c.out += s.ok() ? "ok\n" : absl::StrCat("error ", s.message(), "\n");
    Flush(c);
    DropClient(c.fd);
    return;
  }
  if (line == "attach") {
    c.attached = true;
    c.out += "ok\n";
    for (int i = 0; i < 2; ++i) {
      if (out_[i] < 0) c.out += Frame(i == 0 ? MonitorFrame::kStdout : MonitorFrame::kStderr, "");
    }
    Flush(c);
    return;
  }
  c.out += "error unknown command\n";
  Flush(c);
  DropClient(c.fd);
}

void Monitor::HandleFrames(Client& c) {
  while (c.in.size() >= 5) {
    const auto* p = reinterpret_cast<const unsigned char*>(c.in.data());
    const uint32_t n =
        (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | p[4];
    const bool resize = p[0] == static_cast<unsigned char>(MonitorFrame::kResize);
    if ((p[0] != static_cast<unsigned char>(MonitorFrame::kStdin) && !resize) ||
        n > kMaxMonitorFrame || (resize && n != 4)) {
      DropClient(c.fd);
      return;
    }
    if (c.in.size() < 5 + n) return;
    if (resize) {
      if (o_.tty && out_[0] >= 0) {
        winsize ws{};
        ws.ws_row = static_cast<uint16_t>((p[5] << 8) | p[6]);
        ws.ws_col = static_cast<uint16_t>((p[7] << 8) | p[8]);
        ::ioctl(out_[0], TIOCSWINSZ, &ws);
      }
    } else if (stdin_w_ >= 0) {
      if (n == 0) {
        // The end of one client's input: for good with stdin_once (^D first on a terminal,
        // which closing our descriptor of it would not say), else the next attach goes on.
        if (o_.stdin_once) {
          if (o_.tty) WriteStdin("\x04");
          ::close(stdin_w_);
          stdin_w_ = -1;
        }
      } else {
        WriteStdin(absl::string_view(c.in.data() + 5, n));
      }
    }
    c.in.erase(0, 5 + n);
  }
}

// Waits while the container does not read, as a pipe writer would; a terminal's master is
// non-blocking (it is the output's descriptor too), so its output is pumped meanwhile, or a
// container writing while we wait to give it input would stall both.
void Monitor::WriteStdin(absl::string_view d) {
  while (!d.empty() && stdin_w_ >= 0) {
    ssize_t w = ::write(stdin_w_, d.data(), d.size());
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      pollfd p[2] = {{stdin_w_, POLLOUT, 0}, {out_[0], POLLIN, 0}};
      if (::poll(p, out_[0] >= 0 ? 2 : 1, 1000) < 0 && errno != EINTR) return;
      if (out_[0] >= 0 && p[1].revents) OnOutput(0);
      continue;
    }
    if (w <= 0) return;
    d.remove_prefix(static_cast<size_t>(w));
  }
}

void Monitor::OnClient(int fd, short revents) {
  Client& c = clients_[fd];
  if (revents & POLLOUT) Flush(c);
  if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
  char buf[8192];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    DropClient(fd);
    return;
  }
  c.in.append(buf, static_cast<size_t>(n));
  if (c.attached) {
    HandleFrames(c);
    return;
  }
  size_t eol = c.in.find('\n');
  if (eol == std::string::npos) {
    if (c.in.size() > kMaxCommandLine) DropClient(fd);
    return;
  }
  std::string line = c.in.substr(0, eol);
  c.in.erase(0, eol + 1);
  HandleCommand(c, line);
}

void Monitor::Loop() {
  while (true) {
    if (exited_ && ((out_[0] < 0 && out_[1] < 0) || absl::Now() - exited_at_ > kDrainAfterExit)) {
      return;
    }
    std::vector<pollfd> fds = {{sigfd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (int fd : out_) {
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    }
    const size_t first_client = fds.size();
    for (const auto& [fd, c] : clients_) {
      fds.push_back({fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    }
    if (::poll(fds.data(), fds.size(), exited_ ? 100 : 1000) < 0 && errno != EINTR) return;
    if (fds[0].revents) OnSignal();
    if (!exited_) CheckReaped();
    if (fds[1].revents) OnAccept();
    for (size_t i = 2; i < first_client; ++i) {
      if (!fds[i].revents) continue;
      OnOutput(fds[i].fd == out_[0] ? 0 : 1);
    }
    for (size_t i = first_client; i < fds.size(); ++i) {
      if (fds[i].revents && clients_.contains(fds[i].fd)) OnClient(fds[i].fd, fds[i].revents);
    }
  }
}

bool ReadOomKills(const std::string& memory_cgroup) {
  if (memory_cgroup.empty()) return false;
  absl::StatusOr<std::string> text = ReadFile(memory_cgroup + "/memory.oom_control");
  if (!text.ok()) return false;
  size_t at = text->find("oom_kill ");
  int64_t n = 0;
  if (at == std::string::npos) return false;
  absl::string_view rest(*text);
  rest.remove_prefix(at + 9);
  rest = rest.substr(0, rest.find('\n'));
  return absl::SimpleAtoi(rest, &n) && n > 0;
}

void Monitor::Finish() {
  for (int i = 0; i < 2; ++i) {
    if (out_[i] >= 0 && log_)
      (void)log_->CloseStream(i == 0 ? LogStream::kStdout : LogStream::kStderr);
  }
  MonitorExit e;
  if (WIFSIGNALED(status_)) {
    e.signal = WTERMSIG(status_);
    e.exit_code = 128 + e.signal;
  } else {
    e.exit_code = WEXITSTATUS(status_);
  }
  e.oom_killed = ReadOomKills(o_.memory_cgroup);
  e.finished_at_ns = absl::ToUnixNanos(exited_at_);
  if (absl::Status s = WriteFileAtomic(o_.dir + "/exit.json", EncodeMonitorExit(e)); !s.ok()) {
    std::fprintf(stderr, "podvisor-monitor %s: %s\n", o_.id.c_str(),
                 std::string(s.message()).c_str());
  }
  Broadcast(Frame(MonitorFrame::kExit, ""));
  for (auto& [fd, c] : clients_) ::close(fd);
}

int Monitor::Run() {
  if (absl::Status s = Setup(); !s.ok()) {
    Fail(o_.sync_fd, std::string(s.message()));
    return 1;
  }
  if (absl::Status s = Create(); !s.ok()) {
    Fail(o_.sync_fd, std::string(s.message()));
    return 1;
  }
  if (o_.sync_fd >= 0) {
    std::string line = absl::StrCat("created ", container_, "\n");
    ssize_t n = ::write(o_.sync_fd, line.data(), line.size());
    (void)n;
    ::close(o_.sync_fd);
  }
  Loop();
  Finish();
  return 0;
}

}  // namespace

int RunMonitor(const MonitorOptions& options) { return Monitor(options).Run(); }

std::vector<std::string> MonitorArgs(const MonitorOptions& o) {
  std::vector<std::string> a = {"--id", o.id, "--dir", o.dir, "--pid-file", o.pid_file};
  if (!o.log_path.empty()) a.insert(a.end(), {"--log-path", o.log_path});
  if (!o.memory_cgroup.empty()) a.insert(a.end(), {"--memory-cgroup", o.memory_cgroup});
  if (o.stdin) a.push_back("--stdin");
  if (o.stdin_once) a.push_back("--stdin-once");
  if (o.tty) a.push_back("--tty");
  if (o.sync_fd >= 0) a.insert(a.end(), {"--sync-fd", std::to_string(o.sync_fd)});
  a.push_back("--");
  a.insert(a.end(), o.create_argv.begin(), o.create_argv.end());
  return a;
}

absl::StatusOr<MonitorOptions> ParseMonitorArgs(const std::vector<std::string>& args) {
  MonitorOptions o;
  size_t i = 0;
  auto value = [&](std::string& out) -> absl::Status {
    if (i + 1 >= args.size()) return absl::InvalidArgumentError(args[i] + " needs a value");
    out = args[++i];
    return absl::OkStatus();
  };
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    absl::Status s;
    if (a == "--") {
      o.create_argv.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    } else if (a == "--id") {
      s = value(o.id);
    } else if (a == "--dir") {
      s = value(o.dir);
    } else if (a == "--pid-file") {
      s = value(o.pid_file);
    } else if (a == "--log-path") {
      s = value(o.log_path);
    } else if (a == "--memory-cgroup") {
      s = value(o.memory_cgroup);
    } else if (a == "--stdin") {
      o.stdin = true;
    } else if (a == "--stdin-once") {
      o.stdin_once = true;
    } else if (a == "--tty") {
      o.tty = true;
    } else if (a == "--sync-fd") {
      std::string v;
      s = value(v);
      if (s.ok() && !absl::SimpleAtoi(v, &o.sync_fd)) s = absl::InvalidArgumentError("--sync-fd");
    } else {
      s = absl::InvalidArgumentError(absl::StrCat("unknown argument ", a));
    }
    if (!s.ok()) return s;
  }
  if (o.id.empty() || o.dir.empty() || o.pid_file.empty() ||
      o.create_argv.size() < (o.tty ? 2 : 1) || o.create_argv[0].empty() ||
      o.create_argv[0][0] != '/') {
    return absl::InvalidArgumentError(
        "usage: podvisor-monitor --id ID --dir DIR --pid-file FILE [--log-path FILE] "
        "[--memory-cgroup DIR] [--stdin [--stdin-once]] [--tty] [--sync-fd N] -- "
        "/abs/create-command ... ID");
  }
  return o;
}

std::string EncodeMonitorExit(const MonitorExit& e) {
  return nlohmann::json{{"exit_code", e.exit_code},
                        {"signal", e.signal},
                        {"oom_killed", e.oom_killed},
                        {"finished_at_ns", e.finished_at_ns}}
      .dump();
}

absl::StatusOr<MonitorExit> ReadMonitorExit(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadFile(dir + "/exit.json");
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(dir, "/exit.json is not JSON"));
  }
  MonitorExit e;
  e.exit_code = j.value("exit_code", 0);
  e.signal = j.value("signal", 0);
  e.oom_killed = j.value("oom_killed", false);
  e.finished_at_ns = j.value("finished_at_ns", int64_t{0});
  return e;
}

}  // namespace podvisor::host
