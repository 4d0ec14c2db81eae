#pragma once

// The guest's container manager inside: its state and the operations its files share
// (containers.cc: lifecycle; container_rootfs.cc: root filesystems and disk mounts;
// container_io.cc: process spawning, stdio and exits; container_stats.cc: cgroup figures).

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/async_writer.h"
#include "agent/containers.h"
#include "agent/direct_exec.h"
#include "agent/output_buffer.h"
#include "agent/user_namespace.h"

namespace podvisor::agent {

// One process: a container's init or an exec session.
struct Proc {
  std::string container_id;
  std::string exec_id;
  v1::Process spec;
  pid_t pid = 0;
  bool exited = false;
  v1::ExitStatus status;
  int stdin_fd = -1;  // our end of its stdin until ConnectStdin hands it to stdin_writer
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
  std::string seccomp_json;  // the profile crun loaded; empty: none
  // Its init's namespaces and root for the agent's own execs; null: execs go through crun.
  // Released when the init exits (they would keep an exited container's mounts alive).
  std::shared_ptr<const ContainerNamespaces> ns;
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
  std::mutex seccomp_mu;
  std::map<std::string, std::shared_ptr<const SeccompProgram>> seccomp_programs;  // bounded
  // The pod's user namespace, made by its first container that asks for one.
  PodUserNamespace userns{options.state_dir + "/userns"};

  std::string CrunRoot() const { return options.state_dir + "/crun"; }
  // The pod's cgroup; each container's (cgroupsPath /podvisor/<id>) is below it.
  std::string PodCgroupDir() const { return "/sys/fs/cgroup/podvisor"; }
  std::string CgroupDir(const std::string& id) const { return PodCgroupDir() + "/" + id; }

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

  // `userns`: the root filesystem is to be shifted into the pod's user namespace; it must then be
  // an overlay with an upper of its own (mounted with metacopy, so that the shift copies up
  // metadata, not data).
  Error PrepareRootfs(const v1::Rootfs& root, bool userns, Container* c);
  Error PrepareDiskMounts(v1::ContainerSpec* spec, Container* c);
  // Starts a process with the stdio its spec asks for: crun's `argv` (which exits once the
  // process runs, its errors in `log`), or, when `direct` is set, `direct` with the process's
  // stdio descriptors, or for a terminal the socket it sends the pty master on; it sets
  // proc->pid.
  using DirectStart = std::function<Error(const SpawnOptions& stdio, int console)>;
  Error SpawnWithStdio(const std::vector<std::string>& argv, const std::shared_ptr<Proc>& proc,
                       const std::string& console_socket, const std::string& log,
                       const DirectStart& direct = nullptr);
  // An exec started by the agent in the container (direct_exec.h); UNIMPLEMENTED when it is one
  // for crun. Sets proc->pid; the caller watches it.
  Error ExecDirect(const std::shared_ptr<Container>& c, const std::shared_ptr<Proc>& proc);
  // The compiled seccomp filter of a profile, compiled once per profile (the pod's containers
  // mostly share one).
  Error SeccompFor(const std::string& oci_json, std::shared_ptr<const SeccompProgram>* out);
  void StartPump(const std::shared_ptr<Proc>& proc, int fd, uint32_t stream_id, int index);
  void StartSender(const std::shared_ptr<OutputBuffer>& buffer);
  void ConnectStdin(const std::shared_ptr<Proc>& proc);
  void RouteStdin(uint32_t stream, const std::shared_ptr<AsyncWriter>& writer);
  void CloseOutput(Proc* proc);
  void WatchExit(const std::shared_ptr<Proc>& proc);
  void OnExit(const std::shared_ptr<Proc>& proc, int wait_status);
  Error ReadPid(const std::string& path, pid_t* pid);
  void Cleanup(Container* c);
  // The steps of crun start / kill --all / delete the agent does itself
  // (container_crun_steps.cc).
  Error StartInit(const Container& c);
  Error KillCgroup(const std::string& id, int signal);
  Error DeleteState(const std::string& id);
};

// The output buffers of a process (they are set while it is spawned).
std::vector<std::shared_ptr<OutputBuffer>> OutputsOf(Proc* proc);

}  // namespace podvisor::agent
