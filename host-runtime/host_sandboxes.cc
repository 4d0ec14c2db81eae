// HostRuntime: the sandbox side (pause-less pods on the host).

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/status_util.h"
#include "host-runtime/host_runtime.h"
#include "pod-sandbox/vm_cgroup.h"
#include "host-runtime/pod_namespaces.h"

namespace podvisor {

bool HostRuntimeAvailable(const HostRuntimeOptions& options) {
  return ::access(options.crun.c_str(), X_OK) == 0 && !options.monitor.empty() &&
         ::access(options.monitor.c_str(), X_OK) == 0;
}

HostRuntime::HostRuntime(HostRuntimeOptions options, SandboxStore* sandboxes,
                         ContainerStore* containers, PodNetworkManager* network,
                         ImageController* images)
    : options_(std::move(options)),
      sandboxes_(sandboxes),
      containers_(containers),
      network_(network),
      images_(images) {}

std::shared_ptr<std::mutex> HostRuntime::LockFor(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto& m = locks_[id];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

bool HostRuntime::OwnsSandbox(const std::string& id_or_prefix) const {
  return !id_or_prefix.empty() && sandboxes_->Resolve(id_or_prefix).ok();
}

absl::Status HostRuntime::WritePodFiles(const SandboxMetadata& meta, const std::string& ip) const {
  const std::string& dir = meta.state_dir;
  const bool host_network = meta.network_mode == NamespaceMode::kNode;
  std::string hostname = meta.hostname;
  if (host_network) {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) == 0) hostname = buf;
  } else if (hostname.empty()) {
    hostname = meta.pod_name.substr(0, 63);
  }
  std::string hosts;
  if (host_network) {
    // As containerd: a host-network pod sees the node's own files.
    absl::StatusOr<std::string> node = ReadFile("/etc/hosts");
    hosts = node.ok() ? *node : "127.0.0.1\tlocalhost\n";
  } else {
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    if (!ip.empty()) absl::StrAppend(&hosts, ip, "\t", hostname, "\n");
  }
  std::string resolv;
  if (meta.dns) {
    for (const std::string& s : meta.dns->servers) absl::StrAppend(&resolv, "nameserver ", s, "\n");
    if (!meta.dns->searches.empty()) {
      absl::StrAppend(&resolv, "search ", absl::StrJoin(meta.dns->searches, " "), "\n");
    }
    if (!meta.dns->options.empty()) {
      absl::StrAppend(&resolv, "options ", absl::StrJoin(meta.dns->options, " "), "\n");
    }
  } else {
    absl::StatusOr<std::string> node = ReadFile("/etc/resolv.conf");
    if (node.ok()) resolv = *node;
  }
  for (auto [name, text] :
       {std::pair<const char*, const std::string*>{"hosts", &hosts}, {"resolv.conf", &resolv}}) {
    if (absl::Status s = WriteFileAtomic(absl::StrCat(dir, "/", name), *text, 0644); !s.ok()) {
      return s;
    }
  }
  return WriteFileAtomic(dir + "/hostname", hostname + "\n", 0644);
}

absl::StatusOr<std::string> HostRuntime::RunSandbox(const SandboxConfig& config) {
  if (config.pod_name.empty() || config.pod_namespace.empty() || config.pod_uid.empty()) {
    return absl::InvalidArgumentError("sandbox metadata needs name, namespace and uid");
  }
  if (config.network_mode == NamespaceMode::kTarget || config.pid_mode == NamespaceMode::kTarget ||
      config.ipc_mode == NamespaceMode::kTarget) {
    return absl::InvalidArgumentError("namespace_options: TARGET is not a pod sandbox mode");
  }
  if (config.user_namespace) {
    return absl::InvalidArgumentError(
        "the host handler does not support user namespaces (userns_options mode POD)");
  }
  SandboxMetadata meta;
  meta.id = NewObjectId();
  meta.name = SandboxName(config.pod_name, config.pod_namespace, config.pod_uid, config.attempt);
  meta.pod_name = config.pod_name;
  meta.pod_namespace = config.pod_namespace;
  meta.pod_uid = config.pod_uid;
  meta.attempt = config.attempt;
  meta.labels = config.labels;
  meta.annotations = config.annotations;
  meta.runtime_handler = config.runtime_handler;
  meta.handler = "host";
  meta.log_directory = config.log_directory;
  meta.hostname = config.hostname;
  meta.created_at_ns = absl::ToUnixNanos(absl::Now());
  meta.dns = config.dns;
  meta.port_mappings = config.port_mappings;
  meta.sysctls = config.sysctls;
  meta.network_mode = config.network_mode;
  meta.pid_mode = config.pid_mode;
  meta.ipc_mode = config.ipc_mode;
  meta.vcpus = 0;
  meta.memory_mib = 0;
  meta.state_dir = absl::StrCat(options_.state_dir, "/pods/", meta.id.substr(0, 16));
  meta.cgroup_parent = config.cgroup_parent;
  meta.privileged = config.privileged;

  auto lock = LockFor(meta.id);
  std::lock_guard<std::mutex> guard(*lock);
  if (absl::Status s = sandboxes_->Add({meta, SandboxStatus{}}); !s.ok()) {
    if (s.code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat("pod sandbox ", s.message()));
    }
    return WithContext(s, "store sandbox");
  }
  const bool own_network = meta.network_mode != NamespaceMode::kNode;
  absl::Cleanup undo = [&] {
    (void)host::ReleasePodNamespaces(meta.state_dir);
    if (own_network && network_) (void)network_->Remove(meta.id);
    (void)UnmountAllUnder(meta.state_dir);
    (void)RemoveAll(meta.state_dir);
    (void)sandboxes_->Remove(meta.id);
  };
  const std::string context = absl::StrCat("run host pod ", ShortId(meta.id));
  if (absl::Status s = MakeDirs(meta.state_dir, 0711); !s.ok()) return WithContext(s, context);
  std::optional<PodNetwork> net;
  if (own_network) {
    if (!network_) return absl::FailedPreconditionError("the host handler has no pod network");
    PodNetworkRequest req{meta.id, meta.pod_name, meta.pod_namespace, meta.pod_uid, {}, {}};
    for (const auto& pm : meta.port_mappings) {
      req.port_mappings.push_back({pm.protocol, pm.container_port, pm.host_port, pm.host_ip});
    }
    if (meta.dns) req.dns = PodDnsConfig{meta.dns->servers, meta.dns->searches, meta.dns->options};
    absl::StatusOr<PodNetwork> n = network_->Setup(req);
    if (!n.ok()) return WithContext(n.status(), absl::StrCat(context, ": pod network"));
    net = std::move(*n);
  }
  if (absl::Status s = WritePodFiles(meta, net ? net->PrimaryIp() : ""); !s.ok()) {
    return WithContext(s, context);
  }
  if (meta.ipc_mode != NamespaceMode::kNode) {
    // The pod's POSIX shared memory, as its containers share its IPC namespace.
    const std::string shm = meta.state_dir + "/shm";
    if (absl::Status s = MakeDirs(shm, 0755); !s.ok()) return WithContext(s, context);
    if (::mount("shm", shm.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "mode=1777,size=65536k") != 0) {
      return WithContext(ErrnoStatus(absl::StrCat("mount ", shm), errno), context);
    }
  }
  host::PodNamespaceRequest ns;
  ns.dir = meta.state_dir;
  ns.ipc = meta.ipc_mode != NamespaceMode::kNode;
  ns.uts = own_network;  // a host-network pod keeps the node's hostname, as in containerd
  ns.pid = meta.pid_mode != NamespaceMode::kNode;
  ns.hostname = meta.hostname.empty() ? meta.pod_name.substr(0, 63) : meta.hostname;
  absl::StatusOr<host::PodNamespaces> made = host::CreatePodNamespaces(ns);
  if (!made.ok()) return WithContext(made.status(), context);
  auto updated = sandboxes_->Update(meta.id, [&](SandboxStatus& st) {
    st.state = SandboxState::kReady;
    st.run_completed = true;
    st.vm_pid = made->holder;
    if (net) {
      st.ip = net->PrimaryIp();
      st.additional_ips = net->AdditionalIps();
    }
    return absl::OkStatus();
  });
  if (!updated.ok()) return WithContext(updated.status(), "store sandbox");
  std::move(undo).Cancel();
  PV_LOG(kInfo) << "host pod " << ShortId(meta.id) << " (" << meta.name << ") ready"
                << (own_network ? absl::StrCat(", ip ", net->PrimaryIp()) : ", host network");
  return meta.id;
}

absl::Status HostRuntime::StopSandboxLocked(const Sandbox& sandbox) {
  const std::string& id = sandbox.metadata.id;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != id) continue;
    auto lock = LockFor(c.metadata.id);
    std::lock_guard<std::mutex> guard(*lock);
    if (absl::Status s = KillAndWait(Refresh(c), SIGKILL, absl::Seconds(10)); !s.ok()) {
      return WithContext(s, absl::StrCat("stop host pod ", ShortId(id)));
    }
  }
  if (sandbox.status.stopped) return absl::OkStatus();
  if (absl::Status s = host::ReleasePodNamespaces(sandbox.metadata.state_dir); !s.ok()) {
    return WithContext(s, absl::StrCat("stop host pod ", ShortId(id)));
  }
  if (network_ && sandbox.metadata.network_mode != NamespaceMode::kNode) {
    if (absl::Status s = network_->Teardown(id); !s.ok()) {
      return WithContext(s, absl::StrCat("stop host pod ", ShortId(id), ": network"));
    }
  }
  return sandboxes_
      ->Update(id,
               [](SandboxStatus& st) {
                 st.state = SandboxState::kNotReady;
                 st.stopped = true;
                 st.vm_pid = 0;
                 return absl::OkStatus();
               })
      .status();
}

absl::Status HostRuntime::StopSandbox(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
  if (absl::IsNotFound(sandbox.status())) return absl::OkStatus();
  if (!sandbox.ok()) return sandbox.status();
  return StopSandboxLocked(*sandbox);
}

absl::Status HostRuntime::RemoveSandbox(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  {
    std::lock_guard<std::mutex> guard(*lock);
    absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
    if (absl::IsNotFound(sandbox.status())) return absl::OkStatus();
    if (!sandbox.ok()) return sandbox.status();
    if (absl::Status s = StopSandboxLocked(*sandbox); !s.ok()) return s;
    for (const Container& c : containers_->List()) {
      if (c.metadata.sandbox_id != *id) continue;
      if (absl::Status s = RemoveContainer(c.metadata.id); !s.ok()) {
        return WithContext(s, absl::StrCat("remove host pod ", ShortId(*id), ": containers"));
      }
    }
    if (network_ && sandbox->metadata.network_mode != NamespaceMode::kNode) {
      if (absl::Status s = network_->Remove(*id); !s.ok()) {
        return WithContext(s, absl::StrCat("remove host pod ", ShortId(*id), ": network"));
      }
    }
    if (absl::Status s = UnmountAllUnder(sandbox->metadata.state_dir); !s.ok()) return s;
    if (absl::Status s = RemoveAll(sandbox->metadata.state_dir); !s.ok()) return s;
    if (absl::Status s = sandboxes_->Remove(*id); !s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  locks_.erase(*id);
  PV_LOG(kInfo) << "host pod " << ShortId(*id) << " removed";
  return absl::OkStatus();
}

absl::StatusOr<Sandbox> HostRuntime::InspectSandbox(const std::string& id_or_prefix) const {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
  if (!sandbox.ok()) return sandbox.status();
  if (!sandbox->status.run_completed) {
    return absl::NotFoundError(absl::StrCat("sandbox ", *id, " is still being created"));
  }
  return sandbox;
}

std::vector<Sandbox> HostRuntime::ListSandboxes(const SandboxFilter& filter) const {
  std::vector<Sandbox> out;
  for (Sandbox& s : sandboxes_->List()) {
    if (s.status.run_completed && SandboxMatches(s, filter)) out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<std::string> HostRuntime::SandboxNetns(const std::string& id) const {
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(id);
  if (!sandbox.ok()) return sandbox.status();
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("sandbox ", ShortId(id), " is not ready"));
  }
  if (sandbox->metadata.network_mode == NamespaceMode::kNode || !network_) return std::string();
  return network_->NetnsPath(id);
}

absl::Status HostRuntime::UpdateSandboxResources(const std::string& id_or_prefix,
                                                 const SandboxResources& update) {
  absl::StatusOr<Sandbox> sandbox = InspectSandbox(id_or_prefix);
  if (!sandbox.ok()) return sandbox.status();
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("pod sandbox ", ShortId(sandbox->metadata.id), " is not ready"));
  }
  if (update.cpu_quota < -1 || update.cpu_period < 0 || update.memory_limit_bytes < 0) {
    return absl::InvalidArgumentError("pod resources: negative cpu_period, cpu_quota or memory");
  }
  // The pod cgroup is the parent of its containers' cgroups.
  std::string rel = CgroupsPath(*sandbox, "x");
  rel.resize(rel.size() - 2);
  std::vector<std::string> dirs;
  for (const std::string& dir : CgroupDirs(options_.cgroup_root, rel)) {
    if (::access(dir.c_str(), F_OK) == 0) dirs.push_back(dir);
  }
  VmCgroupLimits limits;
  limits.memory_bytes = static_cast<uint64_t>(update.memory_limit_bytes);
  if (update.cpu_quota != 0) {
    limits.cpu_quota_us = update.cpu_quota;
    limits.cpu_period_us = update.cpu_period > 0 ? update.cpu_period : 100000;
  }
  if (absl::Status s = WriteCgroupLimits(options_.cgroup_root, dirs, limits); !s.ok()) {
    return WithContext(s, absl::StrCat("update host pod ", ShortId(sandbox->metadata.id)));
  }
  return absl::OkStatus();
}

absl::Status HostRuntime::Recover() {
  for (const Sandbox& sb : sandboxes_->List()) {
    const std::string& id = sb.metadata.id;
    if (!sb.status.run_completed) {
      PV_LOG(kWarning) << "host pod " << ShortId(id) << ": cleaning up an interrupted run";
      (void)host::ReleasePodNamespaces(sb.metadata.state_dir);
      if (network_) (void)network_->Remove(id);
      (void)UnmountAllUnder(sb.metadata.state_dir);
      (void)RemoveAll(sb.metadata.state_dir);
      (void)sandboxes_->Remove(id);
      continue;
    }
    if (sb.status.state != SandboxState::kReady) continue;
    const bool needs_holder = sb.status.vm_pid > 0;
    if (needs_holder && host::LiveHolder(sb.metadata.state_dir) == 0) {
      (void)sandboxes_->Update(id, [](SandboxStatus& st) {
        st.state = SandboxState::kNotReady;
        st.reason = "the pod's namespace holder is gone (found at daemon start)";
        return absl::OkStatus();
      });
      PV_LOG(kWarning) << "host pod " << ShortId(id) << " NOTREADY: namespace holder gone";
      continue;
    }
    PV_LOG(kInfo) << "host pod " << ShortId(id) << " found again";
  }
  for (const Container& c : containers_->List()) {
    if (!sandboxes_->Get(c.metadata.sandbox_id).ok()) {
      PV_LOG(kWarning) << "host container " << ShortId(c.metadata.id) << ": no pod; removing";
      (void)RemoveContainer(c.metadata.id);
      continue;
    }
    Container now = Refresh(c, /*at_recovery=*/true);
    PV_LOG(kInfo) << "host container " << ShortId(c.metadata.id) << " found again ("
                  << (now.status.state == ContainerState::kExited ? "exited" : "live") << ")";
  }
  return absl::OkStatus();
}

}  // namespace podvisor
