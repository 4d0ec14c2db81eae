#include "agent/direct_exec.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/container_util.h"
#include "agent/oci_spec.h"

namespace podvisor::agent {
namespace {

// What a child reports on the status pipe: the grandchild's pid, or the step that failed.
struct Report {
  int32_t kind;   // kPid or kFailed
  int32_t value;  // the pid, or the Step
  int32_t err;    // errno of the failed step
};
constexpr int32_t kPid = 1;
constexpr int32_t kFailed = 2;

enum Step : int32_t {
  kJoinCgroup,
  kJoinNamespace,
  kForkIntoPidNamespace,
  kEnterRoot,
  kStdio,
  kTerminal,
  kRlimit,
  kOomScoreAdj,
  kCwd,
  kDropBounding,
  kSeccomp,
  kGroups,
  kGid,
  kUid,
  kCapabilities,
  kAmbient,
  kNoNewPrivs,
  kExecNotFound,
  kExec,
  kStepCount,
};
const char* const kStepNames[kStepCount] = {"join the container's cgroup",
                                            "join the container's namespaces",
                                            "fork into the container's PID namespace",
                                            "enter the container's root",
                                            "set up stdio",
                                            "allocate the terminal",
                                            "set rlimits",
                                            "set oom_score_adj",
                                            "change to the working directory",
                                            "drop bounding capabilities",
                                            "load the seccomp filter",
                                            "set supplementary groups",
                                            "set gid",
                                            "set uid",
                                            "set capabilities",
                                            "raise ambient capabilities",
                                            "set no_new_privs",
                                            "executable file not found in $PATH",
                                            "exec"};

// Async-signal-safe pieces for the children (they are forked from a threaded process).
void Send(int fd, int32_t kind, int32_t value, int32_t err) {
  Report r{kind, value, err};
  ssize_t n;
  do {
    n = write(fd, &r, sizeof(r));
  } while (n < 0 && errno == EINTR);
}

[[noreturn]] void Fail(int fd, Step step, int err) {
  Send(fd, kFailed, step, err);
  _exit(127);
}

// "123" into buf (no allocation); returns its length.
size_t FormatInt(long v, char* buf) {
  char tmp[24];
  size_t n = 0;
  bool neg = v < 0;
  unsigned long u = neg ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
  do {
    tmp[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  size_t len = 0;
  if (neg) buf[len++] = '-';
  while (n > 0) buf[len++] = tmp[--n];
  return len;
}

bool Has(uint64_t set, int cap) { return cap < 64 && (set >> cap) & 1; }

// The grandchild: in the container's PID namespace; becomes the exec'd process.
[[noreturn]] void BecomeProcess(const ContainerNamespaces& ns, const DirectExecPlan& plan,
                                const SpawnOptions& stdio, int console, int devnull, int report,
                                char* const* argv, char* const* envp,
                                const std::vector<const char*>& candidates, bool searched) {
  if (fchdir(ns.root_fd()) != 0 || chroot(".") != 0 || chdir("/") != 0) {
    Fail(report, kEnterRoot, errno);
  }
  setsid();
  int fds[3] = {stdio.stdin_fd >= 0 ? stdio.stdin_fd : devnull,
                stdio.stdout_fd >= 0 ? stdio.stdout_fd : devnull,
                stdio.stderr_fd >= 0 ? stdio.stderr_fd : devnull};
  if (plan.terminal) {
    // The container's devpts, as crun's console: the process's `tty` names a pts of its own.
    // TIOCGPTPEER fails on anything that is not a pty master, whatever /dev/ptmx was made to be.
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) Fail(report, kTerminal, errno);
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) != 0) Fail(report, kTerminal, errno);
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) Fail(report, kTerminal, errno);
    if (plan.rows != 0 && plan.cols != 0) {
      winsize ws{plan.rows, plan.cols, 0, 0};
      if (ioctl(slave, TIOCSWINSZ, &ws) != 0) Fail(report, kTerminal, errno);
    }
    if (ioctl(slave, TIOCSCTTY, 0) != 0) Fail(report, kTerminal, errno);
    if (fchown(slave, plan.uid, static_cast<gid_t>(-1)) != 0) Fail(report, kTerminal, errno);
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &master, sizeof(int));
    if (sendmsg(console, &msg, MSG_NOSIGNAL) != 1) Fail(report, kTerminal, errno);
    close(master);
    fds[0] = fds[1] = fds[2] = slave;
  }
  // Above 2 first, so that dup2 onto 0..2 cannot close a source still to be copied.
  int high[3];
  for (int i = 0; i < 3; ++i) {
    high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    if (high[i] < 0) Fail(report, kStdio, errno);
  }
  for (int i = 0; i < 3; ++i) {
    if (dup2(high[i], i) < 0) Fail(report, kStdio, errno);
  }
  // Nothing of the agent's crosses the exec; the status pipe closes with it, telling success.
  if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) Fail(report, kStdio, errno);
  for (const DirectExecPlan::Limit& l : plan.rlimits) {
    rlimit r{l.soft, l.hard};
    if (setrlimit(l.resource, &r) != 0) Fail(report, kRlimit, errno);
  }
  if (plan.oom_score_adj) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    char buf[24];
    size_t len = FormatInt(*plan.oom_score_adj, buf);
    if (fd < 0 || write(fd, buf, len) != static_cast<ssize_t>(len)) {
      Fail(report, kOomScoreAdj, errno);
    }
    close(fd);
  }
  umask(plan.umask);
  if (chdir(plan.cwd.c_str()) != 0) Fail(report, kCwd, errno);
  for (int cap = 0; cap <= plan.last_cap; ++cap) {
    if (!Has(plan.bounding, cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      Fail(report, kDropBounding, errno);
    }
  }
  sock_fprog prog{};
  if (plan.seccomp) {
    prog.len = static_cast<unsigned short>(plan.seccomp->filter.size());
    prog.filter = const_cast<sock_filter*>(plan.seccomp->filter.data());
  }
  // Without no_new_privs loading a filter needs CAP_SYS_ADMIN, so it goes in while the process
  // still holds it; with it, as late as possible (fewer calls the profile must allow).
  if (plan.seccomp && !plan.no_new_privs &&
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, plan.seccomp->flags, &prog) != 0) {
    Fail(report, kSeccomp, errno);
  }
  if (syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) != 0) {
    Fail(report, kGroups, errno);
  }
  if (syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0) Fail(report, kGid, errno);
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) Fail(report, kUid, errno);
  if (syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0) Fail(report, kUid, errno);
  prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; ++i) {
    data[i].effective = static_cast<uint32_t>(plan.effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(plan.permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(plan.inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &header, data) != 0) Fail(report, kCapabilities, errno);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    Fail(report, kAmbient, errno);
  }
  for (int cap = 0; cap <= plan.last_cap; ++cap) {
    if (Has(plan.ambient, cap) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
      Fail(report, kAmbient, errno);
    }
  }
  if (plan.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    Fail(report, kNoNewPrivs, errno);
  }
  if (plan.seccomp && plan.no_new_privs &&
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, plan.seccomp->flags, &prog) != 0) {
    Fail(report, kSeccomp, errno);
  }
  int exec_err = ENOENT;
  for (const char* path : candidates) {
    execve(path, argv, envp);
    // As execvp: a directory that lacks it, or cannot be searched, moves on to the next.
    if (errno == EACCES) {
      exec_err = EACCES;
    } else if (errno != ENOENT && errno != ENOTDIR) {
      exec_err = errno;
      break;
    }
  }
  Fail(report, exec_err == ENOENT && searched ? kExecNotFound : kExec, exec_err);
}

// Reads one report; false at end of file.
bool ReadReport(int fd, Report* r) {
  size_t got = 0;
  while (got < sizeof(*r)) {
    ssize_t n = read(fd, reinterpret_cast<char*>(r) + got, sizeof(*r) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// INTERNAL, as a failed `crun exec` is: the host reports it as the exec's failure.
Error StepError(const Report& r, const DirectExecPlan& plan) {
  const char* step = r.value >= 0 && r.value < kStepCount ? kStepNames[r.value] : "start";
  if (r.value == kExecNotFound) {
    return Error(Code::kInternal, "exec \"" + plan.argv[0] + "\": " + step);
  }
  std::string what = std::string(step);
  if (r.value == kExec) what = "exec \"" + plan.argv[0] + "\"";
  if (r.value == kCwd) what += " " + plan.cwd;
  return Error(Code::kInternal, what + ": " + std::strerror(r.err));
}

}  // namespace

Error ContainerNamespaces::Open(pid_t init_pid, std::unique_ptr<ContainerNamespaces>* out) {
  // Joined in this order: the cgroup namespace after the cgroup move (its root is then the
  // container's cgroup), the mount namespace last but for the user namespace.
  static const std::pair<const char*, int> kTypes[] = {
      {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
      {"net", CLONE_NEWNET},       {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS},
      {"user", CLONE_NEWUSER}};
  std::unique_ptr<ContainerNamespaces> ns(new ContainerNamespaces());
  const std::string proc = "/proc/" + std::to_string(init_pid);
  for (const auto& [name, type] : kTypes) {
    struct stat theirs {
    }, ours{};
    const std::string path = proc + "/ns/" + name;
    if (stat(path.c_str(), &theirs) != 0) {
      if (errno == ENOENT && std::string(name) == "user") continue;  // no user namespaces
      return ErrnoError("stat " + path, errno);
    }
    if (stat((std::string("/proc/self/ns/") + name).c_str(), &ours) == 0 &&
        ours.st_ino == theirs.st_ino && ours.st_dev == theirs.st_dev) {
      continue;  // the agent's own (the pod's network, IPC and UTS, a shared PID namespace)
    }
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("open " + path, errno);
    ns->ns_.push_back({type, fd});
  }
  ns->root_fd_ = open((proc + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (ns->root_fd_ < 0) return ErrnoError("open " + proc + "/root", errno);
  *out = std::move(ns);
  return Error::Ok();
}

ContainerNamespaces::~ContainerNamespaces() {
  for (Ns& n : ns_) close(n.fd);
  if (root_fd_ >= 0) close(root_fd_);
}

Error BuildDirectExecPlan(const v1::Process& p, bool privileged,
                          std::shared_ptr<const SeccompProgram> seccomp, DirectExecPlan* plan) {
  if (Error e = ValidateProcess(p); !e.ok()) return e;
  if (!p.apparmor_profile().empty()) return Error(Code::kUnimplemented, "an AppArmor profile");
  if (!p.selinux_label().empty()) return Error(Code::kUnimplemented, "an SELinux label");
  for (const std::string& a : p.args()) {
    if (a.find('\0') != std::string::npos) {
      return Error(Code::kInvalidArgument, "an argument holds a NUL byte");
    }
  }
  plan->argv.assign(p.args().begin(), p.args().end());
  plan->env.clear();
  std::string path = kDefaultPath;
  bool has_path = false;
  for (const std::string& e : p.env()) {
    if (e.find('\0') != std::string::npos) {
      return Error(Code::kInvalidArgument, "an environment entry holds a NUL byte");
    }
    plan->env.push_back(e);
    if (e.rfind("PATH=", 0) == 0) {
      path = e.substr(5);
      has_path = true;
    }
  }
  if (!has_path) plan->env.push_back(std::string("PATH=") + kDefaultPath);
  plan->candidates.clear();
  const std::string& cmd = plan->argv[0];
  if (cmd.find('/') != std::string::npos) {
    plan->candidates.push_back(cmd);
  } else {
    size_t start = 0;
    for (;;) {
      size_t end = path.find(':', start);
      std::string dir =
          path.substr(start, end == std::string::npos ? std::string::npos : end - start);
      plan->candidates.push_back((dir.empty() ? "." : dir) + "/" + cmd);
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  plan->terminal = p.terminal();
  plan->rows = static_cast<unsigned short>(std::min<uint32_t>(p.tty_rows(), 0xffff));
  plan->cols = static_cast<unsigned short>(std::min<uint32_t>(p.tty_cols(), 0xffff));
  plan->cwd = p.cwd().empty() ? "/" : p.cwd();
  plan->uid = p.user().uid();
  plan->gid = p.user().gid();
  plan->groups.assign(p.user().additional_gids().begin(), p.user().additional_gids().end());
  if (plan->groups.size() > static_cast<size_t>(kMaxSupplementaryGroups)) {
    return Error(Code::kInvalidArgument, "too many supplementary groups");
  }
  plan->umask = p.user().umask() != 0 ? static_cast<mode_t>(p.user().umask() & 0777) : 022;
  // The kernel's, read once: it does not change while the agent runs.
  static const int kLastCap = [] {
    long last = std::strtol(Slurp("/proc/sys/kernel/cap_last_cap").c_str(), nullptr, 10);
    return last > 0 && last < 64 ? static_cast<int>(last) : KnownCapabilityCount() - 1;
  }();
  plan->last_cap = kLastCap;
  auto bits = [&](const google::protobuf::RepeatedPtrField<std::string>& names,
                  uint64_t* set) -> Error {
    *set = 0;
    for (const std::string& n : names) {
      int cap = CapabilityNumber(n);
      if (cap < 0) return Error(Code::kInvalidArgument, "unknown capability " + n);
      if (cap <= plan->last_cap) *set |= uint64_t{1} << cap;  // one this kernel lacks: none
    }
    return Error::Ok();
  };
  if (privileged) {
    uint64_t all = plan->last_cap >= 63 ? ~uint64_t{0} : (uint64_t{1} << (plan->last_cap + 1)) - 1;
    plan->bounding = plan->effective = plan->permitted = all;
    plan->inheritable = plan->ambient = 0;
    seccomp = nullptr;
  } else {
    const v1::Capabilities& c = p.capabilities();
    for (auto [names, set] :
         {std::pair{&c.bounding(), &plan->bounding}, std::pair{&c.effective(), &plan->effective},
          std::pair{&c.permitted(), &plan->permitted},
          std::pair{&c.inheritable(), &plan->inheritable},
          std::pair{&c.ambient(), &plan->ambient}}) {
      if (Error e = bits(*names, set); !e.ok()) return e;
    }
  }
  plan->no_new_privs = p.no_new_privileges();
  static const std::pair<const char*, int> kLimits[] = {
      {"RLIMIT_CPU", RLIMIT_CPU},           {"RLIMIT_FSIZE", RLIMIT_FSIZE},
      {"RLIMIT_DATA", RLIMIT_DATA},         {"RLIMIT_STACK", RLIMIT_STACK},
      {"RLIMIT_CORE", RLIMIT_CORE},         {"RLIMIT_RSS", RLIMIT_RSS},
      {"RLIMIT_NPROC", RLIMIT_NPROC},       {"RLIMIT_NOFILE", RLIMIT_NOFILE},
      {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},   {"RLIMIT_AS", RLIMIT_AS},
      {"RLIMIT_LOCKS", RLIMIT_LOCKS},       {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
      {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
      {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},     {"RLIMIT_RTTIME", RLIMIT_RTTIME}};
  plan->rlimits.clear();
  for (const v1::Rlimit& l : p.rlimits()) {
    int resource = -1;
    for (const auto& [name, r] : kLimits) {
      if (l.type() == name) resource = r;
    }
    if (resource < 0) return Error(Code::kInvalidArgument, "unknown rlimit " + l.type());
    plan->rlimits.push_back(
        {resource, static_cast<rlim_t>(l.soft()), static_cast<rlim_t>(l.hard())});
  }
  if (p.oom_score_adj() != 0) plan->oom_score_adj = p.oom_score_adj();
  plan->seccomp = std::move(seccomp);
  return Error::Ok();
}

Error StartDirectExec(const ContainerNamespaces& ns, const std::string& cgroup_procs,
                      const DirectExecPlan& plan, const SpawnOptions& stdio, int console,
                      pid_t* pid_out) {
  if (plan.argv.empty() || plan.candidates.empty()) {
    return Error(Code::kInvalidArgument, "empty command");
  }
  if (plan.terminal && console < 0) return Error(Code::kInternal, "a terminal needs a console");
  // Everything the children use is allocated here: they may not allocate.
  std::vector<char*> argv, envp;
  for (const std::string& a : plan.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : plan.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::vector<const char*> candidates;
  for (const std::string& c : plan.candidates) candidates.push_back(c.c_str());
  const bool searched = plan.argv[0].find('/') == std::string::npos;
  int cgroup = open(cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
  if (cgroup < 0) return ErrnoError("open " + cgroup_procs, errno);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int report[2];
  if (devnull < 0 || pipe2(report, O_CLOEXEC) != 0) {
    Error e = ErrnoError("pipe", errno);
    close(cgroup);
    if (devnull >= 0) close(devnull);
    return e;
  }
  pid_t child = fork();
  if (child == 0) {
    close(report[0]);
    sigset_t set;
    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, nullptr);
    signal(SIGPIPE, SIG_DFL);
    // Not dumpable: no process of the container may ptrace or open /proc of it while it holds
    // the agent's privileges and descriptors.
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (write(cgroup, "0", 1) != 1) Fail(report[1], kJoinCgroup, errno);
    for (const ContainerNamespaces::Ns& n : ns.namespaces()) {
      if (setns(n.fd, n.type) != 0) Fail(report[1], kJoinNamespace, errno);
    }
    pid_t grandchild = fork();
    if (grandchild < 0) Fail(report[1], kForkIntoPidNamespace, errno);
    if (grandchild == 0) {
      prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
      BecomeProcess(ns, plan, stdio, console, devnull, report[1], argv.data(), envp.data(),
                    candidates, searched);
    }
    Send(report[1], kPid, grandchild, 0);
    _exit(0);
  }
  int fork_err = errno;
  close(report[1]);
  close(cgroup);
  close(devnull);
  if (child < 0) {
    close(report[0]);
    return ErrnoError("fork", fork_err);
  }
  Report first{}, second{};
  bool got_first = ReadReport(report[0], &first);
  bool got_second = got_first && first.kind == kPid && ReadReport(report[0], &second);
  close(report[0]);
  ProcessReaper::Get().Wait(child);
  if (!got_first) return Error(Code::kInternal, "the exec's first child died");
  if (first.kind != kPid) return StepError(first, plan);
  const pid_t pid = static_cast<pid_t>(first.value);
  if (got_second) {
    ProcessReaper::Get().Wait(pid);  // it exits 127 after reporting
    return StepError(second, plan);
  }
  *pid_out = pid;
  return Error::Ok();
}

}  // namespace podvisor::agent
