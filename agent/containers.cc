#include "agent/containers.h"

#include <algorithm>
#include <atomic>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/async_writer.h"
#include "agent/disks.h"
#include "agent/log.h"
#include "agent/oci_spec.h"
#include "agent/output_buffer.h"
#include "agent/reaper.h"
#include "agent/server.h"

namespace podvisor::agent {
namespace {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool IsValidId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Error WriteWhole(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::trunc);
  out << data;
  out.close();
  if (!out) return Error(Code::kInternal, "write " + path);
  return Error::Ok();
}

// The kernel's initial rootfs (ramfs or tmpfs, the root of the mount tree).
bool RootIsInitramfs() {
  struct statfs fs;
  if (statfs("/", &fs) != 0) return false;
  if (fs.f_type != RAMFS_MAGIC && fs.f_type != TMPFS_MAGIC) return false;
  // After a switch to a tmpfs of our own, "/" is no longer the root of the mount tree.
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string id, parent;
  while (mountinfo >> id >> parent) {
    std::string rest;
    std::getline(mountinfo, rest);
    std::istringstream fields(rest);
    std::string dev, root, point;
    fields >> dev >> root >> point;
    if (point == "/") return id == parent || rest.find(" - rootfs ") != std::string::npos;
  }
  return true;
}

// mkdir -p (the guest has no /bin/mkdir).
Error MakeDirs(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir " + prefix, errno);
    }
  }
  return Error::Ok();
}

int RemoveEntry(const char* path, const struct stat*, int type, FTW*) {
  if (type == FTW_DP) {
    rmdir(path);
  } else {
    unlink(path);
  }
  return 0;
}

// rm -rf that stays on one filesystem and never follows symlinks.
void RemoveTree(const std::string& path) {
  nftw(path.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

// "key value" lines (cpu.stat, memory.stat, memory.events).
uint64_t StatField(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  uint64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

uint64_t ReadU64(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}

// Processes in the guest, kernel threads left out (PF_KTHREAD in /proc/<pid>/stat's flags).
uint32_t CountProcesses() {
  constexpr unsigned long kKernelThread = 0x00200000;
  uint32_t n = 0;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      const std::string stat = Slurp(std::string("/proc/") + e->d_name + "/stat");
      const size_t close = stat.rfind(')');
      if (close == std::string::npos) continue;  // gone meanwhile
      std::istringstream fields(stat.substr(close + 1));
      std::string field;
      unsigned long flags = 0;
      // state ppid pgrp session tty_nr tpgid flags
      for (int i = 0; i < 7 && fields >> field; ++i) {
        if (i == 6) flags = std::strtoul(field.c_str(), nullptr, 10);
      }
      if ((flags & kKernelThread) == 0) ++n;
    }
    closedir(d);
  }
  return n;
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Receives the pty master crun sends to --console-socket.
Error ReceiveConsole(int listen_fd, int* master) {
  pollfd p{listen_fd, POLLIN, 0};
  if (poll(&p, 1, 10000) <= 0) return Error(Code::kInternal, "crun sent no console");
  int conn = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return ErrnoError("accept console", errno);
  char buf[256];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  close(conn);
  cmsghdr* c = n >= 0 ? CMSG_FIRSTHDR(&msg) : nullptr;
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return Error(Code::kInternal, "no console fd");
  std::memcpy(master, CMSG_DATA(c), sizeof(int));
  return Error::Ok();
}

}  // namespace

// One process: a container's init or an exec session.
struct Proc {
  std::string container_id;
  std::string exec_id;
  v1::Process spec;
  pid_t pid = 0;
  bool exited = false;
  v1::ExitStatus status;
  int stdin_fd = -1;    // our end of its stdin until ConnectStdin hands it to stdin_writer
  std::shared_ptr<AsyncWriter> stdin_writer;
  int pty_master = -1;  // terminal only (also stdin_fd's target)
  int open_pumps = 0;   // output pumps still running
  // Output on its way to the host: [0] stdout (or the terminal), [1] stderr; null: not connected.
  std::shared_ptr<OutputBuffer> out[2];
  std::mutex mu;
  std::condition_variable cv;
};

struct Container {
  std::string id;
  std::string bundle;
  std::string rootfs;
  bool mounted_rootfs = false;
  std::vector<std::string> own_mounts;  // ours to unmount, deepest last
  bool started = false;
  bool privileged = false;
  std::shared_ptr<Proc> init;
  std::map<std::string, std::shared_ptr<Proc>> execs;
};

struct ContainerManager::Impl {
  AgentOptions options;
  AgentServer* server;
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Container>> containers;
  // Names exec terminals' console sockets: <bundle>/exec-<exec id>.sock can exceed sun_path
  // (108 bytes) with a 64-character container id.
  std::atomic<uint64_t> next_console = 1;
  // Output stream id -> its buffer, for the host's acknowledgements. Guarded by mu.
  std::map<uint32_t, std::weak_ptr<OutputBuffer>> ack_routes;

  std::string CrunRoot() const { return options.state_dir + "/crun"; }
  std::string CgroupDir(const std::string& id) const {
    return "/sys/fs/cgroup/podvisor/" + id;
  }

  std::vector<std::string> Crun(std::initializer_list<std::string> args,
                                const std::string& log) const {
    std::vector<std::string> argv = {options.crun, "--root", CrunRoot()};
    if (!log.empty()) {
      argv.push_back("--log");
      argv.push_back("file:" + log);
    }
    argv.insert(argv.end(), args);
    return argv;
  }

  std::shared_ptr<Container> Find(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = containers.find(id);
    return it == containers.end() ? nullptr : it->second;
  }

  std::shared_ptr<Proc> FindProc(const std::string& id, const std::string& exec_id, Error* err) {
    std::shared_ptr<Container> c = Find(id);
    if (!c) {
      *err = Error(Code::kNotFound, "container " + id + " not found");
      return nullptr;
    }
    std::lock_guard<std::mutex> lock(mu);
    if (exec_id.empty()) return c->init;
    auto it = c->execs.find(exec_id);
    if (it == c->execs.end()) {
      *err = Error(Code::kNotFound, "exec " + exec_id + " not found in " + id);
      return nullptr;
    }
    return it->second;
  }

  Error PrepareRootfs(const v1::Rootfs& root, Container* c);
  Error PrepareDiskMounts(v1::ContainerSpec* spec, Container* c);
  Error SpawnWithStdio(const std::vector<std::string>& argv, const std::shared_ptr<Proc>& proc,
                       const std::string& console_socket, const std::string& log);
  void StartPump(const std::shared_ptr<Proc>& proc, int fd, uint32_t stream_id, int index);
  void StartSender(const std::shared_ptr<OutputBuffer>& buffer);
  void ConnectStdin(const std::shared_ptr<Proc>& proc);
  void RouteStdin(uint32_t stream, const std::shared_ptr<AsyncWriter>& writer);
  void CloseOutput(Proc* proc);
  void WatchExit(const std::shared_ptr<Proc>& proc);
  void OnExit(const std::shared_ptr<Proc>& proc, int wait_status);
  Error ReadPid(const std::string& path, pid_t* pid);
  void Cleanup(Container* c);
};

Error ContainerManager::Impl::PrepareRootfs(const v1::Rootfs& root, Container* c) {
  switch (root.source_case()) {
    case v1::Rootfs::kPath: {
      struct stat st;
      if (root.path().empty() || root.path()[0] != '/' || stat(root.path().c_str(), &st) != 0 ||
          !S_ISDIR(st.st_mode)) {
        return Error(Code::kInvalidArgument, "rootfs path " + root.path() + " is not a directory");
      }
      c->rootfs = root.path();
      return Error::Ok();
    }
    case v1::Rootfs::kBlockDevice: {
      if (!options.pid1) {
        // On a host, a serial could name one of the host's own disks.
        return Error(Code::kFailedPrecondition, "no disks in --no-pid1 mode");
      }
      const v1::BlockDeviceSource& b = root.block_device();
      std::string device;
      if (Error e = FindBlockDevice("/sys", b.serial(), 5000, &device); !e.ok()) return e;
      std::vector<std::string> opts(b.options().begin(), b.options().end());
      c->rootfs = c->bundle + "/rootfs";
      mkdir(c->rootfs.c_str(), 0755);
      if (!b.overlay()) {
        if (Error e = MountWithOptions(device, c->rootfs, b.fs_type(), opts, root.readonly());
            !e.ok()) {
          return e;
        }
        c->own_mounts.push_back(c->rootfs);
        return Error::Ok();
      }
      const std::string lower = c->bundle + "/lower", upper = c->bundle + "/upper",
                        work = c->bundle + "/work";
      for (const std::string& d : {lower, upper, work}) mkdir(d.c_str(), 0755);
      if (Error e = MountWithOptions(device, lower, b.fs_type(), opts, true); !e.ok()) return e;
      c->own_mounts.push_back(lower);
      if (Error e = MountWithOptions("overlay", c->rootfs, "overlay",
                                     {"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work},
                                     false);
          !e.ok()) {
        return e;
      }
      c->own_mounts.push_back(c->rootfs);
      return Error::Ok();
    }
    case v1::Rootfs::kMount: {
      const v1::Mount& m = root.mount();
      c->rootfs = c->bundle + "/rootfs";
      mkdir(c->rootfs.c_str(), 0755);
      std::vector<std::string> opts(m.options().begin(), m.options().end());
      // An overlay of layers the host mounted (one disk per image layer) without an upper of
      // its own gets a writable upper in guest RAM, as the block-device overlay does.
      if (m.type() == "overlay" &&
          std::none_of(opts.begin(), opts.end(), [](const std::string& o) {
            return o.rfind("upperdir=", 0) == 0;
          })) {
        const std::string upper = c->bundle + "/upper", work = c->bundle + "/work";
        for (const std::string& d : {upper, work}) mkdir(d.c_str(), 0755);
        opts.push_back("upperdir=" + upper);
        opts.push_back("workdir=" + work);
      }
      if (Error e = MountWithOptions(m.source(), c->rootfs, m.type(), opts, false); !e.ok()) {
        return e;
      }
      c->own_mounts.push_back(c->rootfs);
      return Error::Ok();
    }
    case v1::Rootfs::SOURCE_NOT_SET:
      break;
  }
  return Error(Code::kInvalidArgument, "container has no root filesystem");
}

// Mounts whose source is "blockdev:<serial>" name a disk the host attached: the agent mounts it
// under the bundle and hands crun a bind mount of that directory.
Error ContainerManager::Impl::PrepareDiskMounts(v1::ContainerSpec* spec, Container* c) {
  constexpr char kPrefix[] = "blockdev:";
  for (int i = 0; i < spec->mounts_size(); ++i) {
    v1::Mount* m = spec->mutable_mounts(i);
    if (m->source().rfind(kPrefix, 0) != 0) continue;
    if (!options.pid1) return Error(Code::kFailedPrecondition, "no disks in --no-pid1 mode");
    std::string device;
    const std::string serial = m->source().substr(sizeof(kPrefix) - 1);
    if (Error e = FindBlockDevice("/sys", serial, 5000, &device); !e.ok()) {
      return e.With("mount " + m->destination());
    }
    const std::string dir = c->bundle + "/mounts/" + std::to_string(i);
    if (Error e = MakeDirs(dir); !e.ok()) return e;
    std::vector<std::string> opts;
    bool readonly = false;
    for (const std::string& o : m->options()) {
      if (o == "ro") readonly = true;
      if (o != "rbind" && o != "bind" && o != "rprivate" && o != "private") opts.push_back(o);
    }
    if (Error e = MountWithOptions(device, dir, m->type(), opts, readonly); !e.ok()) {
      return e.With("mount " + m->destination());
    }
    c->own_mounts.push_back(dir);
    m->set_source(dir);
    m->set_type("bind");
    m->clear_options();
    m->add_options("rbind");
    if (readonly) m->add_options("ro");
  }
  return Error::Ok();
}

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
static std::vector<std::shared_ptr<OutputBuffer>> OutputsOf(Proc* proc) {
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
                                             const std::string& log) {
  const v1::Process& p = proc->spec;
  SpawnOptions opts;
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  int console_listen = -1;
  if (p.terminal()) {
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
  pid_t crun_pid = 0;
  Error err = Spawn(argv, opts, &crun_pid);
  CloseFd(&in_pipe[0]);
  CloseFd(&out_pipe[1]);
  CloseFd(&err_pipe[1]);
  int status = err.ok() ? ProcessReaper::Get().Wait(crun_pid) : 0;
  if (err.ok() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    std::string msg = Slurp(log);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    const std::string& sub = argv[log.empty() ? 3 : 5];
    err = Error(Code::kInternal, "crun " + sub + ": " + (msg.empty() ? "failed" : msg));
  }
  if (p.terminal()) {
    if (err.ok()) err = ReceiveConsole(console_listen, &proc->pty_master);
    close(console_listen);
    unlink(console_socket.c_str());
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

void ContainerManager::Impl::Cleanup(Container* c) {
  for (auto it = c->own_mounts.rbegin(); it != c->own_mounts.rend(); ++it) {
    if (umount2(it->c_str(), 0) != 0) umount2(it->c_str(), MNT_DETACH);
  }
  c->own_mounts.clear();
  for (const char* f : {"config.json", "init.pid", "crun.log", "console.sock"}) {
    unlink((c->bundle + "/" + f).c_str());
  }
  for (auto& [id, p] : c->execs) {
    unlink((c->bundle + "/exec-" + id + ".json").c_str());
    unlink((c->bundle + "/exec-" + id + ".pid").c_str());
  }
  for (const char* d : {"rootfs", "lower", "upper", "work"}) rmdir((c->bundle + "/" + d).c_str());
  RemoveTree(c->bundle + "/mounts");  // unmounted above; stays on this filesystem anyway
  if (rmdir(c->bundle.c_str()) != 0 && errno != ENOENT) RemoveTree(c->bundle);
}

ContainerManager::ContainerManager(const AgentOptions& options, AgentServer* server)
    : impl_(new Impl{options, server, {}, {}, {}, {}}) {}
ContainerManager::~ContainerManager() = default;

bool ContainerManager::Available() const { return access(impl_->options.crun.c_str(), X_OK) == 0; }

Error ContainerManager::Create(const v1::CreateContainerRequest& req) {
  const std::string& id = req.container_id();
  if (!IsValidId(id)) return Error(Code::kInvalidArgument, "invalid container id");
  if (!Available()) return Error(Code::kFailedPrecondition, impl_->options.crun + " is missing");
  if (Error e = ValidateContainerSpec(req.spec()); !e.ok()) return e.With("container " + id);
  auto c = std::make_shared<Container>();
  c->id = id;
  c->bundle = impl_->options.state_dir + "/containers/" + id;
  c->privileged = req.spec().privileged();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->containers.count(id)) {
      return Error(Code::kAlreadyExists, "container " + id + " already exists");
    }
    impl_->containers[id] = c;  // reserves the id
  }
  Error err = [&]() -> Error {
    if (Error e = MakeDirs(impl_->CrunRoot()); !e.ok()) return e;
    if (Error e = MakeDirs(c->bundle); !e.ok()) return e;
    if (Error e = impl_->PrepareRootfs(req.spec().rootfs(), c.get()); !e.ok()) return e;
    v1::ContainerSpec spec = req.spec();
    if (Error e = impl_->PrepareDiskMounts(&spec, c.get()); !e.ok()) return e;
    if (Error e = ResolveUser(c->rootfs, spec.mutable_process()->mutable_user()); !e.ok()) {
      return e;
    }
    OciOptions oci;
    oci.container_id = id;
    oci.rootfs_path = c->rootfs;
    oci.cgroups_path = "/podvisor/" + id;
    oci.device_cgroup = impl_->options.pid1;
    if (impl_->options.pid1) oci.pod_shm = "/dev/shm";
    std::string config;
    if (Error e = BuildConfigJson(spec, oci, &config); !e.ok()) return e;
    if (Error e = WriteWhole(c->bundle + "/config.json", config); !e.ok()) return e;
    auto proc = std::make_shared<Proc>();
    proc->container_id = id;
    proc->spec = spec.process();
    const std::string log = c->bundle + "/crun.log";
    std::vector<std::string> argv = impl_->Crun(
        {"create", "--bundle", c->bundle, "--pid-file", c->bundle + "/init.pid"}, log);
    if (RootIsInitramfs()) {
      // pivot_root(2) cannot leave the initramfs: crun then moves the root and chroots.
      argv.push_back("--no-pivot");
    }
    if (spec.process().terminal()) {
      argv.push_back("--console-socket");
      argv.push_back(c->bundle + "/console.sock");
    }
    argv.push_back(id);
    if (Error e = impl_->SpawnWithStdio(argv, proc, c->bundle + "/console.sock", log); !e.ok()) {
      return e;
    }
    if (Error e = impl_->ReadPid(c->bundle + "/init.pid", &proc->pid); !e.ok()) return e;
    std::lock_guard<std::mutex> lock(impl_->mu);
    c->init = proc;
    return Error::Ok();
  }();
  if (!err.ok()) {
    RunCommand(impl_->Crun({"delete", "--force", id}, ""));
    impl_->Cleanup(c.get());
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->containers.erase(id);
    return err.With("create container " + id);
  }
  impl_->WatchExit(c->init);
  AgentLog(LogSeverity::kInfo, "container " + id + " created, pid " + std::to_string(c->init->pid));
  return Error::Ok();
}

v1::Response ContainerManager::Start(const v1::StartContainerRequest& req) {
  std::shared_ptr<Container> c = impl_->Find(req.container_id());
  if (!c || !c->init) {
    return ErrorResponse(Error(Code::kNotFound, "container " + req.container_id() + " not found"));
  }
  {
    std::lock_guard<std::mutex> lock(c->init->mu);
    if (c->started) {
      return ErrorResponse(Error(Code::kFailedPrecondition, "container already started"));
    }
    c->init->status.set_started_at_ns(NowNs());
  }
  if (Error e = RunCommand(impl_->Crun({"start", c->id}, "")); !e.ok()) {
    return ErrorResponse(e.With("start container " + c->id));
  }
  c->started = true;
  v1::Response r;
  r.mutable_process_started()->set_pid(static_cast<uint32_t>(c->init->pid));
  return r;
}

Error ContainerManager::Signal(const v1::SignalProcessRequest& req) {
  if (req.signal() <= 0 || req.signal() > 64) return Error(Code::kInvalidArgument, "bad signal");
  Error err;
  std::shared_ptr<Proc> proc = impl_->FindProc(req.container_id(), req.exec_id(), &err);
  if (!proc) return err;
  if (req.all() && req.exec_id().empty()) {
    return RunCommand(impl_->Crun({"kill", "--all", req.container_id(),
                                   std::to_string(req.signal())}, ""));
  }
  std::lock_guard<std::mutex> lock(proc->mu);
  if (proc->exited) return Error::Ok();
  if (kill(proc->pid, req.signal()) != 0 && errno != ESRCH) return ErrnoError("kill", errno);
  return Error::Ok();
}

v1::Response ContainerManager::Wait(const v1::WaitProcessRequest& req) {
  Error err;
  std::shared_ptr<Proc> proc = impl_->FindProc(req.container_id(), req.exec_id(), &err);
  if (!proc) return ErrorResponse(err);
  std::unique_lock<std::mutex> lock(proc->mu);
  proc->cv.wait(lock, [&] { return proc->exited; });
  v1::Response r;
  *r.mutable_exit_status() = proc->status;
  return r;
}

Error ContainerManager::Remove(const v1::RemoveContainerRequest& req) {
  std::shared_ptr<Container> c = impl_->Find(req.container_id());
  if (!c) return Error::Ok();  // kubelet retries removals
  std::shared_ptr<Proc> init = c->init;
  if (init) {
    std::unique_lock<std::mutex> lock(init->mu);
    if (!init->exited) {
      if (!req.force()) {
        return Error(Code::kFailedPrecondition, "container " + c->id + " is still running");
      }
      kill(init->pid, SIGKILL);
      init->cv.wait_for(lock, std::chrono::seconds(10), [&] { return init->exited; });
    }
  }
  RunCommand(impl_->Crun({"delete", "--force", c->id}, ""));
  impl_->Cleanup(c.get());
  if (init) impl_->CloseOutput(init.get());
  std::vector<std::shared_ptr<Proc>> execs;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (auto& [eid, p] : c->execs) execs.push_back(p);
  }
  for (auto& p : execs) impl_->CloseOutput(p.get());
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->containers.erase(c->id);
  return Error::Ok();
}

v1::Response ContainerManager::Exec(const v1::ExecProcessRequest& req) {
  if (!IsValidId(req.exec_id())) return ErrorResponse(Error(Code::kInvalidArgument, "bad exec id"));
  std::shared_ptr<Container> c = impl_->Find(req.container_id());
  if (!c || !c->started) {
    return ErrorResponse(
        Error(Code::kFailedPrecondition, "container " + req.container_id() + " is not running"));
  }
  auto proc = std::make_shared<Proc>();
  proc->container_id = c->id;
  proc->exec_id = req.exec_id();
  proc->spec = req.process();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (c->execs.count(req.exec_id())) {
      return ErrorResponse(Error(Code::kAlreadyExists, "exec " + req.exec_id() + " exists"));
    }
    c->execs[req.exec_id()] = proc;
  }
  auto fail = [&](const Error& e) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    c->execs.erase(req.exec_id());
    return ErrorResponse(e.With("exec in " + c->id));
  };
  if (Error e = ResolveUser(c->rootfs, proc->spec.mutable_user()); !e.ok()) return fail(e);
  std::string json;
  if (Error e = BuildProcessJson(proc->spec, c->privileged, &json); !e.ok()) return fail(e);
  const std::string base = c->bundle + "/exec-" + req.exec_id();
  if (Error e = WriteWhole(base + ".json", json); !e.ok()) return fail(e);
  const std::string log = base + ".log";
  std::vector<std::string> argv =
      impl_->Crun({"exec", "--detach", "--pid-file", base + ".pid", "--process", base + ".json"},
                  log);
  const std::string console =
      impl_->options.state_dir + "/tty-" + std::to_string(impl_->next_console++) + ".sock";
  if (proc->spec.terminal()) {
    argv.push_back("--console-socket");
    argv.push_back(console);
  }
  argv.push_back(c->id);
  proc->status.set_started_at_ns(NowNs());
  if (Error e = impl_->SpawnWithStdio(argv, proc, console, log); !e.ok()) return fail(e);
  if (Error e = impl_->ReadPid(base + ".pid", &proc->pid); !e.ok()) return fail(e);
  unlink(log.c_str());
  impl_->WatchExit(proc);
  v1::Response r;
  r.mutable_process_started()->set_pid(static_cast<uint32_t>(proc->pid));
  return r;
}

Error ContainerManager::Resize(const v1::ResizeTtyRequest& req) {
  Error err;
  std::shared_ptr<Proc> proc = impl_->FindProc(req.container_id(), req.exec_id(), &err);
  if (!proc) return err;
  std::lock_guard<std::mutex> lock(proc->mu);
  if (proc->pty_master < 0) return Error(Code::kFailedPrecondition, "process has no terminal");
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(req.rows());
  ws.ws_col = static_cast<unsigned short>(req.cols());
  if (ioctl(proc->pty_master, TIOCSWINSZ, &ws) != 0) return ErrnoError("resize tty", errno);
  return Error::Ok();
}

v1::Response ContainerManager::Stats(const v1::StatsRequest& req) {
  std::vector<std::string> ids(req.container_ids().begin(), req.container_ids().end());
  if (ids.empty()) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [id, c] : impl_->containers) ids.push_back(id);
  }
  v1::Response r;
  v1::StatsResponse* out = r.mutable_stats();
  for (const std::string& id : ids) {
    std::shared_ptr<Container> c = impl_->Find(id);
    if (!c) continue;
    const std::string dir = impl_->CgroupDir(id);
    v1::ContainerStats* s = out->add_containers();
    s->set_container_id(id);
    s->set_timestamp_ns(NowNs());
    s->set_cpu_usage_ns(StatField(Slurp(dir + "/cpu.stat"), "usage_usec") * 1000);
    const uint64_t usage = ReadU64(dir + "/memory.current");
    const std::string mem = Slurp(dir + "/memory.stat");
    const uint64_t inactive = StatField(mem, "inactive_file");
    s->set_memory_usage_bytes(usage);
    s->set_memory_working_set_bytes(usage > inactive ? usage - inactive : 0);
    s->set_memory_rss_bytes(StatField(mem, "anon"));
    s->set_page_faults(StatField(mem, "pgfault"));
    s->set_major_page_faults(StatField(mem, "pgmajfault"));
    s->set_pids(static_cast<uint32_t>(ReadU64(dir + "/pids.current")));
  }
  const std::string meminfo = Slurp("/proc/meminfo");
  auto kb = [&](const std::string& key) {
    size_t p = meminfo.find(key + ":");
    return p == std::string::npos ? 0ull : std::strtoull(meminfo.c_str() + p + key.size() + 1,
                                                         nullptr, 10) * 1024ull;
  };
  out->set_guest_memory_total_bytes(kb("MemTotal"));
  out->set_guest_memory_available_bytes(kb("MemAvailable"));
  if (kb("MemTotal") > kb("MemAvailable")) {
    out->set_guest_memory_used_bytes(kb("MemTotal") - kb("MemAvailable"));
  }
  out->set_guest_cpu_usage_ns(StatField(Slurp("/sys/fs/cgroup/cpu.stat"), "usage_usec") * 1000);
  out->set_guest_process_count(CountProcesses());
  return r;
}

Error ContainerManager::UpdateResources(const v1::UpdateContainerResourcesRequest& req) {
  const std::string& id = req.container_id();
  std::shared_ptr<Container> c = impl_->Find(id);
  if (!c || !c->init) return Error(Code::kNotFound, "container " + id + " not found");
  {
    std::lock_guard<std::mutex> lock(c->init->mu);
    if (c->init->exited) {
      return Error(Code::kFailedPrecondition, "container " + id + " has exited");
    }
  }
  if (req.set_oom_score_adj() && (req.oom_score_adj() < -1000 || req.oom_score_adj() > 1000)) {
    return Error(Code::kInvalidArgument, "oom_score_adj must be within -1000..1000");
  }
  std::string json;
  if (Error e = BuildResourcesUpdateJson(req.resources(), &json); !e.ok()) return e;
  // crun converts the OCI values to cgroup v2 files exactly as it did at create (shares to
  // cpu.weight, memory+swap to memory.swap.max, ...), so created and updated limits agree.
  const std::string file = c->bundle + "/update-" + std::to_string(impl_->next_console++) + ".json";
  if (Error e = WriteWhole(file, json); !e.ok()) return e;
  const std::string log = c->bundle + "/update.log";
  std::string output;
  Error err = RunCommand(impl_->Crun({"update", "--resources", file, id}, log), &output);
  if (!err.ok()) {
    const std::string why = Slurp(log);
    err = Error(Code::kInvalidArgument, "crun update: " + (why.empty() ? err.message() : why));
  }
  unlink(file.c_str());
  unlink(log.c_str());
  if (!err.ok()) return err.With("update container " + id);
  if (req.set_oom_score_adj()) {
    std::istringstream procs(Slurp(impl_->CgroupDir(id) + "/cgroup.procs"));
    for (std::string pid; procs >> pid;) {
      // A process that exited meanwhile is no error.
      (void)WriteWhole("/proc/" + pid + "/oom_score_adj", std::to_string(req.oom_score_adj()));
    }
  }
  AgentLog(LogSeverity::kInfo, "container " + id + " resources updated");
  return Error::Ok();
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

void ContainerManager::StopAll(uint32_t grace_ms) {
  std::vector<std::shared_ptr<Proc>> running;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [id, c] : impl_->containers) {
      if (c->init && c->started) running.push_back(c->init);
    }
  }
  for (auto& p : running) {
    std::lock_guard<std::mutex> lock(p->mu);
    if (!p->exited) kill(p->pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  for (auto& p : running) {
    std::unique_lock<std::mutex> lock(p->mu);
    if (!p->cv.wait_until(lock, deadline, [&] { return p->exited; })) kill(p->pid, SIGKILL);
  }
}

}  // namespace podvisor::agent
