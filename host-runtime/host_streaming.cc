#include "host-runtime/host_streaming.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/status_util.h"
#include "host-runtime/child.h"
#include "host-runtime/monitor.h"
#include "host-runtime/monitor_client.h"
#include "host-runtime/unix_path.h"
#include "network/netns.h"

namespace podvisor {
namespace {

constexpr int kPollMs = 50;

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Copies `in` into `fd` until either ends; then `at_end` (close or shut down the write side).
std::thread Upload(streaming::ByteSource* in, int fd, std::function<void()> at_end,
                   std::atomic<bool>* finished) {
  return std::thread([in, fd, at_end = std::move(at_end), finished] {
    char buf[32 * 1024];
    size_t n;
    while ((n = in->Read(buf, sizeof buf)) > 0) {
      if (!WriteAll(fd, absl::string_view(buf, n))) break;
    }
    at_end();
    finished->store(true);
  });
}

// True once `pid` has exited (its wait status in `status`); false while it runs.
bool Reaped(pid_t pid, int* status) {
  pid_t r;
  while ((r = ::waitpid(pid, status, WNOHANG)) < 0 && errno == EINTR) {
  }
  return r == pid;
}

std::string ReadAvailable(int fd) {
  std::string text;
  char buf[4096];
  ssize_t n;
  while (text.size() < 64 * 1024 && (n = ::read(fd, buf, sizeof buf)) > 0) {
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

// Exec with a terminal: crun allocates the pty and sends its master to a console socket of
// ours, then waits for the process and exits with its status. Input goes to the master (^D at
// its end, as a terminal's reader expects), output comes from it, resizes set its window size.
absl::StatusOr<int> ExecOnHostWithTerminal(HostRuntime* host, const streaming::ExecRequest& request,
                                           const streaming::SessionStreams& streams) {
  std::string files;
  absl::StatusOr<std::vector<std::string>> args =
      host->ExecCommand(request.container_id, request.cmd, true, &files);
  if (!args.ok()) return args.status();
  absl::Cleanup remove_files = [&] {
    ::unlink((files + ".json").c_str());
    ::unlink((files + ".pid").c_str());
    ::unlink((files + ".tty").c_str());
  };
  const size_t slash = files.rfind('/');
  const std::string dir = files.substr(0, slash), name = files.substr(slash + 1) + ".tty";
  absl::StatusOr<int> listen_fd = host::ListenUnix(dir, name);
  if (!listen_fd.ok()) return WithContext(listen_fd.status(), "console socket");
  absl::Cleanup close_listen = [fd = *listen_fd] { ::close(fd); };
  // crun connects by path: one through our own descriptor of the directory always fits.
  const int dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus("open " + dir, errno);
  absl::Cleanup close_dir = [dir_fd] { ::close(dir_fd); };
  const std::string console = absl::StrCat("/proc/", ::getpid(), "/fd/", dir_fd, "/", name);
  auto at = std::find(args->begin(), args->end(), "--process");
  if (at == args->end()) return absl::InternalError("exec command has no --process");
  args->insert(at, {"--console-socket", console});

  int err[2];
  if (::pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoStatus("pipe", errno);
  absl::StatusOr<pid_t> spawned = host::SpawnChild(*args, -1, -1, err[1]);
  if (!spawned.ok()) return spawned.status();
  const pid_t pid = *spawned;
  ::close(err[1]);
  absl::Cleanup close_err = [fd = err[0]] { ::close(fd); };
  int status = 0;
  bool reaped = false;
  auto crun_failed = [&]() -> absl::Status {
    std::string why(absl::StripAsciiWhitespace(ReadAvailable(err[0])));
    return absl::InternalError(
        absl::StrCat("exec: crun: ", why.empty() ? "exited before sending a terminal" : why));
  };
  // The master, once crun has connected and sent it (crun fails first when it cannot exec).
  int master = -1;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (master < 0) {
    if (Reaped(pid, &status)) return crun_failed();
    if (streams.done->HasBeenNotified() || absl::Now() > give_up) {
      host::EndExec(pid, files + ".pid");
      return absl::DeadlineExceededError("exec: crun sent no terminal");
    }
    pollfd p{*listen_fd, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    int conn = ::accept4(*listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    absl::StatusOr<int> fd = host::ReceiveDescriptor(conn);
    ::close(conn);
    if (fd.ok()) master = *fd;
  }
  absl::Cleanup close_master = [master] { ::close(master); };
  ::fcntl(master, F_SETFL, ::fcntl(master, F_GETFL) | O_NONBLOCK);

  std::atomic<bool> stop{false};
  std::thread upload, resize;
  if (streams.in) {
    upload = std::thread([&] {
      auto write_all = [&](absl::string_view data) {
        while (!data.empty() && !stop.load()) {
          ssize_t n = ::write(master, data.data(), data.size());
          if (n > 0) {
            data.remove_prefix(static_cast<size_t>(n));
          } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd p{master, POLLOUT, 0};
            ::poll(&p, 1, kPollMs);
          } else {
            return false;
          }
        }
        return data.empty();
      };
      char buf[32 * 1024];
      size_t n;
      while ((n = streams.in->Read(buf, sizeof buf)) > 0) {
        if (!write_all(absl::string_view(buf, n))) return;
      }
      if (!stop.load()) write_all("\x04");  // ^D: end of input for the terminal's reader
    });
  }
  if (streams.resize) {
    resize = std::thread([&] {
      while (std::optional<streaming::TerminalSize> size = streams.resize->Next()) {
        winsize ws{};
        ws.ws_row = size->height;
        ws.ws_col = size->width;
        ::ioctl(master, TIOCSWINSZ, &ws);
      }
    });
  }
  auto drain = [&] {
    char buf[32 * 1024];
    ssize_t n;
    while ((n = ::read(master, buf, sizeof buf)) > 0) {
      if (streams.out) streams.out->Write(absl::string_view(buf, static_cast<size_t>(n)));
    }
  };
  while (!streams.done->HasBeenNotified()) {
    // The process's exit ends the session even when a child of it still holds the terminal.
    if (Reaped(pid, &status)) {
      reaped = true;
      drain();
      break;
    }
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    char buf[32 * 1024];
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // EIO: every holder of the terminal has closed it
    if (streams.out) streams.out->Write(absl::string_view(buf, static_cast<size_t>(n)));
  }
  if (!reaped && streams.done->HasBeenNotified()) {
    status = host::EndExec(pid, files + ".pid");  // the client left: the process goes too
    reaped = true;
  }
  if (!reaped) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (streams.out) streams.out->Close();
  stop.store(true);
  if (streams.in) {
    streams.in->Cancel();
    upload.join();
  }
  if (streams.resize) {
    streams.resize->Cancel();
    resize.join();
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

absl::StatusOr<int> ExecOnHost(HostRuntime* host, const streaming::ExecRequest& request,
                               const streaming::SessionStreams& streams) {
  if (request.tty) return ExecOnHostWithTerminal(host, request, streams);
  std::string files;
  absl::StatusOr<std::vector<std::string>> args =
      host->ExecCommand(request.container_id, request.cmd, false, &files);
  if (!args.ok()) return args.status();
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    return ErrnoStatus("pipe", errno);
  }
  absl::StatusOr<pid_t> spawned = host::SpawnChild(*args, in[0], out[1], err[1]);
  if (!spawned.ok()) return spawned.status();
  const pid_t pid = *spawned;
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  std::atomic<bool> uploaded{false};
  std::thread upload;
  if (streams.in) {
    upload = Upload(
        streams.in, in[1], [fd = in[1]] { ::close(fd); }, &uploaded);
  } else {
    ::close(in[1]);
  }
  int fds[2] = {out[0], err[0]};
  streaming::ByteSink* sinks[2] = {streams.out, streams.err};
  while ((fds[0] >= 0 || fds[1] >= 0) && !streams.done->HasBeenNotified()) {
    pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    if (::poll(p, 2, kPollMs) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || !p[i].revents) continue;
      char buf[32 * 1024];
      ssize_t n = ::read(fds[i], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fds[i]);
        fds[i] = -1;
        if (sinks[i]) sinks[i]->Close();
        continue;
      }
      if (sinks[i]) sinks[i]->Write(absl::string_view(buf, static_cast<size_t>(n)));
    }
  }
  int status = 0;
  const bool ended = streams.done->HasBeenNotified();
  if (ended) status = host::EndExec(pid, files + ".pid");  // the client left: the process goes too
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  while (!ended && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (streams.in) {
    streams.in->Cancel();
    upload.join();
  }
  ::unlink((files + ".json").c_str());
  ::unlink((files + ".pid").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Reads one monitor frame; false at the end of the connection.
bool ReadFrame(int fd, host::MonitorFrame* type, std::string* data,
               const absl::Notification* done) {
  auto read_exact = [&](char* buf, size_t n) {
    while (n > 0) {
      pollfd p{fd, POLLIN, 0};
      if (done->HasBeenNotified()) return false;
      if (::poll(&p, 1, kPollMs) <= 0) continue;
      ssize_t r = ::recv(fd, buf, n, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      buf += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  };
  unsigned char head[5];
  if (!read_exact(reinterpret_cast<char*>(head), 5)) return false;
  const uint32_t n =
      (uint32_t{head[1]} << 24) | (uint32_t{head[2]} << 16) | (uint32_t{head[3]} << 8) | head[4];
  if (n > host::kMaxMonitorFrame) return false;
  *type = static_cast<host::MonitorFrame>(head[0]);
  data->resize(n);
  return read_exact(data->data(), n);
}

absl::Status AttachOnHost(HostRuntime* host, const streaming::AttachRequest& request,
                          const streaming::SessionStreams& streams) {
  absl::StatusOr<std::string> dir = host->MonitorDir(request.container_id);
  if (!dir.ok()) return dir.status();
  absl::StatusOr<int> fd = host::AttachMonitor(*dir, absl::Seconds(10));
  if (!fd.ok()) return WithContext(fd.status(), "attach");
  std::atomic<bool> uploaded{false};
  std::thread upload, resize;
  // Stdin and resizes go as frames, from two threads: one frame on the socket at a time.
  std::mutex send_mu;
  auto send_frame = [&, sock = *fd](host::MonitorFrame type, absl::string_view data) {
    std::string f(5, '\0');
    f[0] = static_cast<char>(type);
    f[1] = static_cast<char>(data.size() >> 24);
    f[2] = static_cast<char>(data.size() >> 16);
    f[3] = static_cast<char>(data.size() >> 8);
    f[4] = static_cast<char>(data.size());
    f.append(data.data(), data.size());
    std::lock_guard<std::mutex> lock(send_mu);
    return WriteAll(sock, f);
  };
  if (streams.in) {
    upload = std::thread([&] {
      char buf[host::kMaxMonitorFrame];
      size_t n;
      while ((n = streams.in->Read(buf, sizeof buf)) > 0) {
        if (!send_frame(host::MonitorFrame::kStdin, absl::string_view(buf, n))) break;
      }
      send_frame(host::MonitorFrame::kStdin, "");
      uploaded.store(true);
    });
  }
  if (streams.resize) {
    resize = std::thread([&] {
      while (std::optional<streaming::TerminalSize> size = streams.resize->Next()) {
        const char rows_cols[4] = {
            static_cast<char>(size->height >> 8), static_cast<char>(size->height),
            static_cast<char>(size->width >> 8), static_cast<char>(size->width)};
        if (!send_frame(host::MonitorFrame::kResize, absl::string_view(rows_cols, 4))) break;
      }
    });
  }
  host::MonitorFrame type = host::MonitorFrame::kExit;
  std::string data;
  bool open[2] = {true, true};
  while ((open[0] || open[1]) && ReadFrame(*fd, &type, &data, streams.done)) {
    if (type == host::MonitorFrame::kExit) break;
    const int i = type == host::MonitorFrame::kStdout ? 0 : 1;
    streaming::ByteSink* sink = i == 0 ? streams.out : streams.err;
    if (data.empty()) {
      open[i] = false;
      if (sink) sink->Close();
    } else if (sink) {
      sink->Write(data);
    }
  }
  if (streams.out) streams.out->Close();
  if (streams.err) streams.err->Close();
  ::shutdown(*fd, SHUT_RDWR);
  if (streams.in) {
    streams.in->Cancel();
    upload.join();
  }
  if (streams.resize) {
    streams.resize->Cancel();
    resize.join();
  }
  ::close(*fd);
  return absl::OkStatus();
}

absl::StatusOr<int> ConnectLoopback(int32_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(absl::StrCat("connect to 127.0.0.1:", port), err);
  }
  return fd;
}

absl::Status ForwardOnHost(HostRuntime* host, const std::string& sandbox_id, int32_t port,
                           streaming::ByteSource& in, streaming::ByteSink& out,
                           const absl::Notification& done) {
  const std::string context =
      absl::StrCat("port-forward to port ", port, " in pod sandbox ", ShortId(sandbox_id));
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": not a TCP port"));
  }
  absl::StatusOr<std::string> netns = host->SandboxNetns(sandbox_id);
  if (!netns.ok()) return WithContext(netns.status(), context);
  absl::StatusOr<int> fd = absl::InternalError("not connected");
  if (netns->empty()) {
    fd = ConnectLoopback(port);  // a host-network pod listens on the node's own loopback
  } else {
    absl::Status s = network::RunInNetns(*netns, [&]() -> absl::Status {
      fd = ConnectLoopback(port);
      return fd.status();
    });
    if (!s.ok()) fd = s;
  }
  if (!fd.ok()) return WithContext(fd.status(), context);
  std::atomic<bool> uploaded{false};
  std::thread upload = Upload(
      &in, *fd, [sock = *fd] { ::shutdown(sock, SHUT_WR); }, &uploaded);
  while (!done.HasBeenNotified()) {
    pollfd p{*fd, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    char buf[32 * 1024];
    ssize_t n = ::recv(*fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!out.Write(absl::string_view(buf, static_cast<size_t>(n)))) break;
  }
  out.Close();
  ::shutdown(*fd, SHUT_RDWR);
  in.Cancel();
  upload.join();
  ::close(*fd);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> HandlerStreamingRuntime::Exec(const streaming::ExecRequest& request,
                                                  const streaming::SessionStreams& streams) {
  if (host_ && host_->OwnsContainer(request.container_id)) {
    return ExecOnHost(host_, request, streams);
  }
  return vm_->Exec(request, streams);
}

absl::Status HandlerStreamingRuntime::Attach(const streaming::AttachRequest& request,
                                             const streaming::SessionStreams& streams) {
  if (host_ && host_->OwnsContainer(request.container_id)) {
    return AttachOnHost(host_, request, streams);
  }
  return vm_->Attach(request, streams);
}

absl::Status HandlerStreamingRuntime::PortForward(const std::string& sandbox_id, int32_t port,
                                                  streaming::ByteSource& in,
                                                  streaming::ByteSink& out,
                                                  const absl::Notification& done) {
  if (host_ && host_->OwnsSandbox(sandbox_id)) {
    return ForwardOnHost(host_, sandbox_id, port, in, out, done);
  }
  return vm_->PortForward(sandbox_id, port, in, out, done);
}

}  // namespace podvisor
