// The steps of `crun start`, `crun kill --all <container> KILL` and `crun delete` that the agent
// does itself: each crun run is a fresh dynamically linked executable, which costs hundreds of
// milliseconds in a TCG guest (docs/performance.md, "Container steps"), while what it does for
// these three is a few file operations on its state directory and the container's cgroup. The
// container itself (namespaces, cgroups, seccomp, capabilities, user) is set up by crun create
// and exec as before; whatever here meets a state it does not expect leaves the job to crun.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "agent/container_util.h"
#include "agent/containers_impl.h"

namespace podvisor::agent {
namespace {

// Writes `value` to an existing file (cgroup control files, a fifo).
Error WriteExisting(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path, errno);
  const ssize_t n = write(fd, value.data(), value.size());
  const int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) return ErrnoError("write " + path, err);
  return Error::Ok();
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Waits until no process is left in the cgroup (cgroup.events says "populated 0").
bool WaitUnpopulated(const std::string& dir, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(200);
  for (;;) {
    const std::string events = Slurp(dir + "/cgroup.events");
    if (events.empty()) return false;
    if (StatField(events, "populated") == 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(20000));
  }
}

}  // namespace

// As crun start does: the container's init waits reading <state>/exec.fifo, which crun create
// made; opening it for writing, removing it (crun then reports the container "running") and
// writing one byte lets the init exec the container's process.
Error ContainerManager::Impl::StartInit(const Container& c) {
  const std::string fifo = CrunRoot() + "/" + c.id + "/exec.fifo";
  // Non-blocking: with no reader (the init is gone) the open fails at once instead of hanging.
  int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENXIO) {
      return Error(Code::kFailedPrecondition,
                   "container " + c.id + " is not running: its init exited before the start");
    }
    if (errno == ENOENT) {
      return Error(Code::kFailedPrecondition, "container " + c.id + " was started already");
    }
    return ErrnoError("open " + fifo, errno);
  }
  Error err = Error::Ok();
  if (unlink(fifo.c_str()) != 0) err = ErrnoError("unlink " + fifo, errno);
  if (err.ok() && write(fd, "", 1) != 1) err = ErrnoError("write " + fifo, errno);
  close(fd);
  return err;
}

// As crun kill --all does for SIGKILL on cgroup v2: every process of the container's cgroup
// (and of cgroups under it) at once, none can fork away. kUnimplemented: not this way (another
// signal, a kernel without cgroup.kill): crun kill must do it.
Error ContainerManager::Impl::KillCgroup(const std::string& id, int signal) {
  if (signal != SIGKILL) return Error(Code::kUnimplemented, "not SIGKILL");
  const std::string dir = CgroupDir(id);
  if (access((dir + "/cgroup.kill").c_str(), W_OK) != 0) {
    return Error(Code::kUnimplemented, "no cgroup.kill in " + dir);
  }
  return WriteExisting(dir + "/cgroup.kill", "1");
}

// What crun delete --force does for a container whose init has exited, with the cgroupfs
// manager and no hooks (the agent writes none): kill what is left in the cgroup, remove the
// cgroup (and any under it), remove crun's state directory. An error means crun delete must
// finish the job (it finds whatever is left).
Error ContainerManager::Impl::DeleteState(const std::string& id) {
  const std::string dir = CgroupDir(id);
  if (IsDirectory(dir)) {
    if (Error e = WriteExisting(dir + "/cgroup.kill", "1"); !e.ok()) return e;
    if (!WaitUnpopulated(dir, std::chrono::seconds(2))) {
      return Error(Code::kInternal, "processes of " + id + " outlived cgroup.kill");
    }
    RemoveTree(dir);  // cgroup directories go depth first; their files cannot be unlinked
    if (IsDirectory(dir)) return ErrnoError("rmdir " + dir, EBUSY);
  }
  const std::string state = CrunRoot() + "/" + id;
  RemoveTree(state);
  if (access(state.c_str(), F_OK) == 0) return Error(Code::kInternal, "cannot remove " + state);
  return Error::Ok();
}

}  // namespace podvisor::agent
