// Processes of containers: spawning under crun, stdio pumps to the host, stdin, exits, and the
// output a restarted host takes over.
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/async_writer.h"
#include "agent/container_util.h"
#include "agent/containers.h"
#include "agent/containers_impl.h"
#include "agent/disks.h"
#include "agent/log.h"
#include "agent/oci_spec.h"
#include "agent/output_buffer.h"
#include "agent/reaper.h"
#include "agent/server.h"

namespace podvisor::agent {
namespace {

// Receives the pty master crun sends to --console-socket.
// The descriptor sent (SCM_RIGHTS) on the connected socket `conn`.
Error ReceiveFd(int conn, int flags, int* fd) {
  char buf[256];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | flags);
  cmsghdr* c = n >= 0 ? CMSG_FIRSTHDR(&msg) : nullptr;
  if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int))) {
    return Error(Code::kInternal, "no console fd");
  }
  std::memcpy(fd, CMSG_DATA(c), sizeof(int));
  return Error::Ok();
}

Error ReceiveConsole(int listen_fd, int* master) {
  pollfd p{listen_fd, POLLIN, 0};
  if (poll(&p, 1, 10000) <= 0) return Error(Code::kInternal, "crun sent no console");
  int conn = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return ErrnoError("accept console", errno);
  Error e = ReceiveFd(conn, 0, master);
  close(conn);
  return e;
}

}  // namespace

void ContainerManager::Impl::StartPump(const std::shared_ptr<Proc>& proc, int fd,
                                       uint32_t stream_id, int index) {
  std::shared_ptr<OutputBuffer> buffer;
  if (stream_id != 0) {
    // Only a container's own output can be taken over by a restarted host.
    const bool retain = proc->spec.acked_output() && proc->exec_id.empty();
    buffer = MakeOutputBuffer(stream_id, retain, proc->spec.output_window());
    if (buffer->acked()) {
      std::lock_guard<std::mutex> lock(mu);
      ack_routes[stream_id] = buffer;
    }
  }
  {
    std::lock_guard<std::mutex> lock(proc->mu);
    ++proc->open_pumps;
    proc->out[index] = buffer;
  }
  if (buffer) StartSender(buffer);
  std::thread([proc, fd, buffer] {
    char buf[32 * 1024];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EOF, or EIO on a pty whose last writer closed
      // Blocks while the buffer is full: the process then blocks on its writes, nothing is lost.
      if (buffer && !buffer->Append(buf, static_cast<size_t>(n))) break;
    }
    if (buffer) buffer->MarkEof();
    if (fd != proc->pty_master) close(fd);
    std::lock_guard<std::mutex> lock(proc->mu);
    --proc->open_pumps;
    proc->cv.notify_all();
  }).detach();
}

// Moves a buffer's bytes to whichever stream id the host currently takes them on. A write blocks
// while the host is away; the pump goes on filling the buffer meanwhile.
void ContainerManager::Impl::StartSender(const std::shared_ptr<OutputBuffer>& buffer) {
  AgentServer* srv = server;
  std::thread([buffer, srv] {
    OutputBuffer::Chunk chunk;
    // A frame within one virtio-serial write (32 KiB): a host that dies gets whole frames.
    while (buffer->Next(32 * 1024 - 64, &chunk)) {
      (void)srv->SendStream(chunk.stream_id, chunk.data, chunk.eof);
      buffer->Sent(chunk);
    }
  }).detach();
}

// The output buffers of a process (they are set while it is spawned).
std::vector<std::shared_ptr<OutputBuffer>> OutputsOf(Proc* proc) {
  std::lock_guard<std::mutex> lock(proc->mu);
  return {proc->out[0], proc->out[1]};
}

void ContainerManager::Impl::CloseOutput(Proc* proc) {
  const std::vector<std::shared_ptr<OutputBuffer>> outs = OutputsOf(proc);
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& b : outs) {
    if (!b) continue;
    b->Close();
    for (auto it = ack_routes.begin(); it != ack_routes.end();) {
      it = it->second.lock() == b ? ack_routes.erase(it) : std::next(it);
    }
  }
}

void ContainerManager::Impl::ConnectStdin(const std::shared_ptr<Proc>& proc) {
  const uint32_t stream = proc->spec.stdin_stream();
  if (stream == 0 || proc->stdin_fd < 0) return;
  const bool tty = proc->pty_master >= 0;
  // The writer owns (and closes) its fd: the pipe itself, or a dup of the pty master, which
  // stays with the output pump.
  const int fd = tty ? fcntl(proc->pty_master, F_DUPFD_CLOEXEC, 0) : proc->stdin_fd;
  if (!tty) proc->stdin_fd = -1;
  if (fd < 0) return;
  auto writer = AsyncWriter::Start(fd, [tty](int fd) {
    if (tty) {
      const char eot = 4;  // ^D: end of input for the terminal's reader
      (void)!write(fd, &eot, 1);
    }
  });
  proc->stdin_writer = writer;
  RouteStdin(stream, writer);
}

void ContainerManager::Impl::RouteStdin(uint32_t stream,
                                        const std::shared_ptr<AsyncWriter>& writer) {
  AgentServer* srv = server;
  srv->AddStreamHandler(stream, [writer, srv, stream](const std::string& data, bool eof) {
    writer->Write(data);
    if (eof) {
      writer->Finish();
      srv->RemoveStreamHandler(stream);
    }
  });
}

Error ContainerManager::Impl::SpawnWithStdio(const std::vector<std::string>& argv,
                                             const std::shared_ptr<Proc>& proc,
                                             const std::string& console_socket,
                                             const std::string& log, const DirectStart& direct) {
  const v1::Process& p = proc->spec;
  SpawnOptions opts;
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  int console_listen = -1;
  int console_pair[2] = {-1, -1};  // a direct start's terminal: the master comes back on [0]
  if (p.terminal() && direct) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console_pair) != 0) {
      return ErrnoError("console socketpair", errno);
    }
  } else if (p.terminal()) {
    console_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (console_socket.size() >= sizeof(addr.sun_path)) {
      close(console_listen);
      return Error(Code::kInternal, "console socket path too long");
    }
    std::memcpy(addr.sun_path, console_socket.data(), console_socket.size());
    unlink(console_socket.c_str());
    if (bind(console_listen, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(console_listen, 1) != 0) {
      Error e = ErrnoError("console socket", errno);
      close(console_listen);
      return e;
    }
  } else {
    if ((p.stdin_stream() && pipe2(in_pipe, O_CLOEXEC) != 0) ||
        (p.stdout_stream() && pipe2(out_pipe, O_CLOEXEC) != 0) ||
        (p.stderr_stream() && pipe2(err_pipe, O_CLOEXEC) != 0)) {
      return ErrnoError("pipe", errno);
    }
    opts.stdin_fd = in_pipe[0];
    opts.stdout_fd = out_pipe[1];
    opts.stderr_fd = err_pipe[1];
    if (opts.stderr_fd < 0) {
      // Keep crun's own stderr off the agent's console; its errors go to --log anyway.
      opts.stderr_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
      err_pipe[1] = opts.stderr_fd;
    }
  }
  Error err;
  if (direct) {
    err = direct(opts, console_pair[1]);
    CloseFd(&console_pair[1]);
  } else {
    pid_t crun_pid = 0;
    err = Spawn(argv, opts, &crun_pid);
    int status = err.ok() ? ProcessReaper::Get().Wait(crun_pid) : 0;
    if (err.ok() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      std::string msg = Slurp(log);
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      const std::string& sub = argv[log.empty() ? 3 : 5];
      err = Error(Code::kInternal, "crun " + sub + ": " + (msg.empty() ? "failed" : msg));
    }
  }
  CloseFd(&in_pipe[0]);
  CloseFd(&out_pipe[1]);
  CloseFd(&err_pipe[1]);
  if (p.terminal()) {
    if (direct) {
      // Sent before the start was reported: it is queued on the socket by now.
      if (err.ok()) err = ReceiveFd(console_pair[0], MSG_DONTWAIT, &proc->pty_master);
      CloseFd(&console_pair[0]);
    } else {
      if (err.ok()) err = ReceiveConsole(console_listen, &proc->pty_master);
      close(console_listen);
      unlink(console_socket.c_str());
    }
    if (!err.ok()) return err;
    proc->stdin_fd = proc->pty_master;
    StartPump(proc, proc->pty_master, p.stdout_stream(), 0);
    ConnectStdin(proc);
    return Error::Ok();
  }
  if (!err.ok()) {
    CloseFd(&in_pipe[1]);
    CloseFd(&out_pipe[0]);
    CloseFd(&err_pipe[0]);
    return err;
  }
  proc->stdin_fd = in_pipe[1];
  if (out_pipe[0] >= 0) StartPump(proc, out_pipe[0], p.stdout_stream(), 0);
  if (err_pipe[0] >= 0) StartPump(proc, err_pipe[0], p.stderr_stream(), 1);
  ConnectStdin(proc);
  return Error::Ok();
}

Error ContainerManager::Impl::ReadPid(const std::string& path, pid_t* pid) {
  long v = std::strtol(Slurp(path).c_str(), nullptr, 10);
  if (v <= 0) return Error(Code::kInternal, "crun wrote no pid to " + path);
  *pid = static_cast<pid_t>(v);
  return Error::Ok();
}

void ContainerManager::Impl::WatchExit(const std::shared_ptr<Proc>& proc) {
  ProcessReaper::Get().Watch(proc->pid, [this, proc](int status) {
    // Off the reaper thread: waiting for the output to drain may take a moment.
    std::thread([this, proc, status] { OnExit(proc, status); }).detach();
  });
}

void ContainerManager::Impl::OnExit(const std::shared_ptr<Proc>& proc, int wait_status) {
  v1::ExitStatus st;
  if (WIFSIGNALED(wait_status)) {
    st.set_signal(WTERMSIG(wait_status));
    st.set_exit_code(128 + WTERMSIG(wait_status));
  } else {
    st.set_exit_code(WEXITSTATUS(wait_status));
  }
  st.set_finished_at_ns(NowNs());
  if (proc->exec_id.empty()) {
    {
      // Its namespaces die with it; execs are refused from now on.
      std::lock_guard<std::mutex> lock(mu);
      auto it = containers.find(proc->container_id);
      if (it != containers.end() && it->second->init == proc) it->second->ns.reset();
    }
    const std::string events = Slurp(CgroupDir(proc->container_id) + "/memory.events");
    if (StatField(events, "oom_kill") > 0) {
      st.set_oom_killed(true);
      v1::Event oom;
      oom.mutable_oom()->set_container_id(proc->container_id);
      server->SendEvent(oom);
    }
  }
  {
    // Deliver the last output before the exit; a daemonised child that keeps the pipe open
    // must not hold the exit back for long.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    {
      std::unique_lock<std::mutex> lock(proc->mu);
      proc->cv.wait_until(lock, deadline, [&] { return proc->open_pumps == 0; });
    }
    for (const auto& b : OutputsOf(proc.get())) {
      if (!b) continue;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      b->WaitDrained(std::max(left, std::chrono::milliseconds(0)));
    }
    std::unique_lock<std::mutex> lock(proc->mu);
    st.set_started_at_ns(proc->status.started_at_ns());
    proc->status = st;
    proc->exited = true;
    if (proc->stdin_writer) {
      // A pipe closes once what is queued is written (or its reader is gone); a terminal's
      // input is moot now.
      if (proc->pty_master >= 0) {
        proc->stdin_writer->Abort();
      } else {
        proc->stdin_writer->Finish();
      }
      proc->stdin_writer.reset();
    }
    if (proc->pty_master >= 0 && proc->open_pumps == 0) CloseFd(&proc->pty_master);
    proc->cv.notify_all();
  }
  uint32_t stdin_stream;
  {
    std::lock_guard<std::mutex> lock(proc->mu);
    stdin_stream = proc->spec.stdin_stream();
  }
  if (stdin_stream != 0) server->RemoveStreamHandler(stdin_stream);
  v1::Event e;
  e.mutable_process_exited()->set_container_id(proc->container_id);
  e.mutable_process_exited()->set_exec_id(proc->exec_id);
  *e.mutable_process_exited()->mutable_status() = st;
  server->SendEvent(e);
  AgentLog(LogSeverity::kInfo, "container " + proc->container_id +
                                   (proc->exec_id.empty() ? "" : " exec " + proc->exec_id) +
                                   " exited with " + std::to_string(st.exit_code()));
}

v1::Response ContainerManager::AttachOutput(const v1::AttachOutputRequest& req) {
  Error err;
  std::shared_ptr<Proc> proc = impl_->FindProc(req.container_id(), "", &err);
  if (!proc) return ErrorResponse(err);
  const uint32_t ids[2] = {req.stdout_stream(), req.stderr_stream()};
  const uint64_t offsets[2] = {req.stdout_offset(), req.stderr_offset()};
  v1::Response r;
  v1::AttachOutputResponse* out = r.mutable_attach_output();
  const std::vector<std::shared_ptr<OutputBuffer>> outs = OutputsOf(proc.get());
  for (int i = 0; i < 2; ++i) {
    const std::shared_ptr<OutputBuffer>& b = outs[i];
    if (ids[i] == 0 || !b) continue;
    if (!b->retain()) {
      return ErrorResponse(Error(Code::kFailedPrecondition,
                                 "container " + req.container_id() +
                                     " was created without acked_output: its output cannot be "
                                     "taken over"));
    }
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->ack_routes.erase(b->stream_id());
    const uint64_t start = b->Subscribe(ids[i], offsets[i]);
    impl_->ack_routes[ids[i]] = b;
    if (i == 0) {
      out->set_stdout_offset(start);
    } else {
      out->set_stderr_offset(start);
    }
  }
  std::shared_ptr<AsyncWriter> writer;
  uint32_t old_stdin = 0;
  {
    std::lock_guard<std::mutex> lock(proc->mu);
    out->set_exited(proc->exited);
    if (req.stdin_stream() != 0 && proc->stdin_writer) {
      writer = proc->stdin_writer;
      old_stdin = proc->spec.stdin_stream();
      proc->spec.set_stdin_stream(req.stdin_stream());
    }
  }
  if (writer) {
    if (old_stdin != 0) impl_->server->RemoveStreamHandler(old_stdin);
    impl_->RouteStdin(req.stdin_stream(), writer);
  }
  AgentLog(LogSeverity::kInfo, "container " + req.container_id() + ": output re-attached at " +
                                   std::to_string(out->stdout_offset()) + "/" +
                                   std::to_string(out->stderr_offset()));
  return r;
}

void ContainerManager::AckOutput(uint32_t stream_id, uint64_t offset) {
  std::shared_ptr<OutputBuffer> b;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->ack_routes.find(stream_id);
    if (it != impl_->ack_routes.end()) b = it->second.lock();
  }
  if (b) b->Ack(offset);
}

void ContainerManager::HostChanged() {
  std::vector<std::shared_ptr<Proc>> procs;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->ack_routes.clear();
    for (const auto& [id, c] : impl_->containers) {
      if (c->init) procs.push_back(c->init);
      for (const auto& [eid, p] : c->execs) procs.push_back(p);
    }
  }
  for (const auto& p : procs) {
    for (const auto& b : OutputsOf(p.get())) {
      if (b) b->Unsubscribe();
    }
  }
}

}  // namespace podvisor::agent
