#pragma once

// Execs started by the agent itself in a running container, instead of one `crun exec` run per
// exec (under TCG a fresh crun costs ~1-1.5 s; this path costs two forks). The process gets
// what crun would give it: the container's namespaces, root and cgroup, its user and groups,
// capabilities, no_new_privs, rlimits, umask and the container's seccomp filter (compiled once
// per profile by seccomp_bpf.h, with the library crun uses), and a terminal allocated in the
// container's own devpts as crun allocates it. What only crun does (an AppArmor profile, an
// SELinux label, a seccomp notifier) is UNIMPLEMENTED here and the caller runs crun for it.

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/reaper.h"
#include "agent/result.h"
#include "agent/seccomp_bpf.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

// A created container's namespaces and root, opened from its init right after `crun create`
// (the init is then blocked before the container's own code, so nothing of the container can
// have changed them yet). Only the namespaces that differ from the agent's are kept.
class ContainerNamespaces {
 public:
  static Error Open(pid_t init_pid, std::unique_ptr<ContainerNamespaces>* out);
  ~ContainerNamespaces();
  ContainerNamespaces(const ContainerNamespaces&) = delete;
  ContainerNamespaces& operator=(const ContainerNamespaces&) = delete;

  struct Ns {
    int type;  // CLONE_NEW*
    int fd;
  };
  // In the order they are joined: the user namespace last (joining it drops the agent's
  // capabilities over the others).
  const std::vector<Ns>& namespaces() const { return ns_; }
  int root_fd() const { return root_fd_; }

 private:
  ContainerNamespaces() = default;
  std::vector<Ns> ns_;
  int root_fd_ = -1;
};

struct DirectExecPlan {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  // Where argv[0] is looked for, in order (the PATH of `env` for a bare name).
  std::vector<std::string> candidates;
  std::string cwd = "/";
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  mode_t umask = 022;
  uint64_t bounding = 0, effective = 0, permitted = 0, inheritable = 0, ambient = 0;
  bool no_new_privs = false;
  struct Limit {
    int resource;
    rlim_t soft, hard;
  };
  std::vector<Limit> rlimits;
  std::optional<int> oom_score_adj;
  std::shared_ptr<const SeccompProgram> seccomp;  // null: no filter
  // A pty for stdio, opened from the container's /dev/ptmx; its master is sent back over the
  // console descriptor StartDirectExec is given. rows/cols 0: the kernel's default size.
  bool terminal = false;
  unsigned short rows = 0, cols = 0;
  int last_cap = 40;                              // /proc/sys/kernel/cap_last_cap
};

// The plan of `p` (its user already resolved). `privileged`: every capability, no filter.
// UNIMPLEMENTED for what only crun does; INVALID_ARGUMENT for an unknown capability or rlimit.
Error BuildDirectExecPlan(const v1::Process& p, bool privileged,
                          std::shared_ptr<const SeccompProgram> seccomp, DirectExecPlan* plan);

// Starts the plan's process in `ns`, in the cgroup whose cgroup.procs is `cgroup_procs`, with
// `stdio`'s descriptors (-1: /dev/null), or, for a plan with a terminal, the pty whose master
// is sent (SCM_RIGHTS) on `console`, one end of a connected unix socket. `*pid` is in the agent's
// PID namespace; the caller watches it with the ProcessReaper. An error names the step that
// failed (the command not found, a cwd that does not exist, ...); no process is left behind then.
Error StartDirectExec(const ContainerNamespaces& ns, const std::string& cgroup_procs,
                      const DirectExecPlan& plan, const SpawnOptions& stdio, int console,
                      pid_t* pid);

}  // namespace podvisor::agent
