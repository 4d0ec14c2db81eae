#include "agent/containers.h"

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
#include "agent/containers_impl.h"
#include "agent/disks.h"
#include "agent/log.h"
#include "agent/oci_spec.h"
#include "agent/output_buffer.h"
#include "agent/reaper.h"
#include "agent/server.h"
#include "agent/step_timings.h"

namespace podvisor::agent {

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
    : impl_(new Impl{options, server, {}, {}, {}, {}, {}, {}}) {}
ContainerManager::~ContainerManager() = default;

bool ContainerManager::Available() const { return access(impl_->options.crun.c_str(), X_OK) == 0; }

Error ContainerManager::Create(const v1::CreateContainerRequest& req, v1::User* user) {
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
    const bool userns = req.spec().has_user_namespace();
    if (userns) {
      // The namespace is bind-mounted in the guest; without being PID 1 the agent would leave
      // mounts on whatever host runs it.
      if (!impl_->options.pid1) {
        return Error(Code::kFailedPrecondition, "no user namespaces in --no-pid1 mode");
      }
      if (Error e = impl_->userns.Ensure(req.spec().user_namespace()); !e.ok()) return e;
    }
    if (Error e = impl_->PrepareRootfs(req.spec().rootfs(), userns, c.get()); !e.ok()) return e;
    MarkStep("mount rootfs");
    if (userns) {
      size_t shifted = 0;
      if (Error e = ShiftOwnership(c->rootfs, req.spec().user_namespace(), &shifted); !e.ok()) {
        return e;
      }
      MarkStep("shift the rootfs into the user namespace");
      AgentLog(LogSeverity::kInfo, "container " + id + ": " + std::to_string(shifted) +
                                       " files shifted into the pod's user namespace");
    }
    v1::ContainerSpec spec = req.spec();
    if (Error e = impl_->PrepareDiskMounts(&spec, c.get()); !e.ok()) return e;
    MarkStep("mount disk volumes");
    if (Error e = ResolveUser(c->rootfs, spec.mutable_process()->mutable_user()); !e.ok()) {
      return e;
    }
    OciOptions oci;
    oci.container_id = id;
    oci.rootfs_path = c->rootfs;
    oci.cgroups_path = "/podvisor/" + id;
    oci.device_cgroup = impl_->options.pid1;
    if (impl_->options.pid1) oci.pod_shm = "/dev/shm";
    if (userns) {
      oci.user_namespace = impl_->userns.path();
      oci.pod_mqueue = impl_->userns.mqueue();
      oci.pod_pid_namespace = impl_->userns.pid_path();
    }
    // The agent compiles the profile for the container's execs anyway; crun, given the
    // program, skips libseccomp (about 100 ms of `crun create` in a TCG guest). A profile the
    // agent cannot compile (a notifier; one it finds invalid) is left to crun, as before.
    if (!spec.privileged() && !spec.seccomp().oci_json().empty()) {
      std::shared_ptr<const SeccompProgram> program;
      if (Error e = impl_->SeccompFor(spec.seccomp().oci_json(), &program); e.ok()) {
        oci.seccomp_bpf.assign(reinterpret_cast<const char*>(program->filter.data()),
                               program->filter.size() * sizeof(sock_filter));
      } else {
        AgentLog(LogSeverity::kInfo,
                 "container " + id + ": crun compiles its seccomp profile: " + e.message());
      }
      MarkStep("compile the seccomp profile");
    }
    std::string config;
    if (Error e = BuildConfigJson(spec, oci, &config); !e.ok()) return e;
    if (Error e = WriteWhole(c->bundle + "/config.json", config); !e.ok()) return e;
    MarkStep("resolve user, write config.json");
    auto proc = std::make_shared<Proc>();
    proc->container_id = id;
    proc->spec = spec.process();
    const std::string log = c->bundle + "/crun.log";
    std::vector<std::string> argv =
        impl_->Crun({"create", "--bundle", c->bundle, "--pid-file", c->bundle + "/init.pid"}, log);
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
    MarkStep("crun create");
    if (Error e = impl_->ReadPid(c->bundle + "/init.pid", &proc->pid); !e.ok()) return e;
    *user = spec.process().user();
    if (!spec.privileged()) c->seccomp_json = spec.seccomp().oci_json();
    std::unique_ptr<ContainerNamespaces> ns;
    if (Error e = ContainerNamespaces::Open(proc->pid, &ns); e.ok()) {
      c->ns = std::move(ns);
    } else {
      AgentLog(LogSeverity::kWarning,
               "container " + id + ": its execs go through crun: " + e.message());
    }
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
  MarkStep("read the pid, log");
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
  if (Error e = impl_->StartInit(*c); !e.ok()) {
    return ErrorResponse(e.With("start container " + c->id));
  }
  MarkStep("start (exec.fifo)");
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
    Error e = impl_->KillCgroup(req.container_id(), req.signal());
    if (e.code() != Code::kUnimplemented) {
      MarkStep("kill all (cgroup.kill)");
      return e;
    }
    e = RunCommand(
        impl_->Crun({"kill", "--all", req.container_id(), std::to_string(req.signal())}, ""));
    MarkStep("crun kill --all");
    return e;
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
      MarkStep("kill init, wait for its exit");
    }
  }
  bool exited = false;
  if (init) {
    std::lock_guard<std::mutex> lock(init->mu);
    exited = init->exited;
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    c->ns.reset();
  }
  Error deleted = exited ? impl_->DeleteState(c->id)
                         : Error(Code::kFailedPrecondition, "the init has not exited");
  if (deleted.ok()) {
    MarkStep("delete (cgroup, state)");
  } else {
    if (exited) AgentLog(LogSeverity::kWarning, "delete " + c->id + ": " + deleted.message());
    RunCommand(impl_->Crun({"delete", "--force", c->id}, ""));
    MarkStep("crun delete");
  }
  impl_->Cleanup(c.get());
  MarkStep("unmount, remove the bundle");
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

v1::Response ContainerManager::List() const {
  std::vector<std::shared_ptr<Container>> all;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [id, c] : impl_->containers) all.push_back(c);
  }
  v1::Response r;
  v1::ListContainersResponse* out = r.mutable_containers();
  for (const std::shared_ptr<Container>& c : all) {
    v1::ListContainersResponse::Entry* e = out->add_containers();
    e->set_id(c->id);
    e->set_state(v1::ListContainersResponse::CREATED);
    std::shared_ptr<Proc> init;
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      init = c->init;
    }
    if (!init) continue;  // still being created
    std::lock_guard<std::mutex> lock(init->mu);
    e->set_pid(static_cast<uint32_t>(init->pid));
    if (init->exited) {
      e->set_state(v1::ListContainersResponse::EXITED);
    } else if (c->started) {
      e->set_state(v1::ListContainersResponse::RUNNING);
    }
  }
  return r;
}

Error ContainerManager::Impl::SeccompFor(const std::string& oci_json,
                                         std::shared_ptr<const SeccompProgram>* out) {
  std::lock_guard<std::mutex> lock(seccomp_mu);
  auto it = seccomp_programs.find(oci_json);
  if (it != seccomp_programs.end()) {
    *out = it->second;
    return Error::Ok();
  }
  auto program = std::make_shared<SeccompProgram>();
  if (Error e = CompileSeccompProfile(oci_json, program.get()); !e.ok()) return e;
  if (seccomp_programs.size() >= 16) seccomp_programs.erase(seccomp_programs.begin());
  seccomp_programs[oci_json] = program;
  *out = std::move(program);
  return Error::Ok();
}

Error ContainerManager::Impl::ExecDirect(const std::shared_ptr<Container>& c,
                                         const std::shared_ptr<Proc>& proc) {
  std::shared_ptr<const ContainerNamespaces> ns;
  {
    std::lock_guard<std::mutex> lock(mu);
    ns = c->ns;
  }
  if (!ns) return Error(Code::kUnimplemented, "the container's namespaces are not held");
  std::shared_ptr<const SeccompProgram> seccomp;
  if (!c->privileged && !c->seccomp_json.empty()) {
    if (Error e = SeccompFor(c->seccomp_json, &seccomp); !e.ok()) {
      // crun compiled this profile when it created the container: let it do so again.
      if (e.code() != Code::kUnimplemented) {
        AgentLog(LogSeverity::kWarning, "container " + c->id + ": seccomp profile: " + e.message() +
                                            "; its execs go through crun");
      }
      return Error(Code::kUnimplemented, e.message());
    }
  }
  DirectExecPlan plan;
  if (Error e = BuildDirectExecPlan(proc->spec, c->privileged, seccomp, &plan); !e.ok()) return e;
  {
    std::lock_guard<std::mutex> lock(c->init->mu);
    if (c->init->exited) {
      return Error(Code::kFailedPrecondition, "container " + c->id + " is not running");
    }
  }
  MarkStep("exec plan");
  proc->status.set_started_at_ns(NowNs());
  const std::string procs = CgroupDir(c->id) + "/cgroup.procs";
  return SpawnWithStdio({}, proc, "", "", [&](const SpawnOptions& stdio, int console) {
    return StartDirectExec(*ns, procs, plan, stdio, console, &proc->pid);
  });
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
  if (Error e = impl_->ExecDirect(c, proc); e.code() != Code::kUnimplemented) {
    if (!e.ok()) return fail(e);
    impl_->WatchExit(proc);
    MarkStep("start in the container (agent)");
    v1::Response r;
    r.mutable_process_started()->set_pid(static_cast<uint32_t>(proc->pid));
    return r;
  }
  std::string json;
  if (Error e = BuildProcessJson(proc->spec, c->privileged, &json); !e.ok()) return fail(e);
  const std::string base = c->bundle + "/exec-" + req.exec_id();
  if (Error e = WriteWhole(base + ".json", json); !e.ok()) return fail(e);
  MarkStep("resolve user, write process.json");
  const std::string log = base + ".log";
  std::vector<std::string> argv = impl_->Crun(
      {"exec", "--detach", "--pid-file", base + ".pid", "--process", base + ".json"}, log);
  const std::string console =
      impl_->options.state_dir + "/tty-" + std::to_string(impl_->next_console++) + ".sock";
  if (proc->spec.terminal()) {
    argv.push_back("--console-socket");
    argv.push_back(console);
  }
  argv.push_back(c->id);
  proc->status.set_started_at_ns(NowNs());
  if (Error e = impl_->SpawnWithStdio(argv, proc, console, log); !e.ok()) return fail(e);
  MarkStep("crun exec");
  if (Error e = impl_->ReadPid(base + ".pid", &proc->pid); !e.ok()) return fail(e);
  unlink(log.c_str());
  impl_->WatchExit(proc);
  MarkStep("read the pid");
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
