#include "pod-sandbox/sandbox_controller.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/random.h"
#include "common/status_util.h"
#include "common/log.h"
#include "pod-sandbox/shared_directory_volumes.h"
#include "pod-sandbox/vm_cgroup.h"
#include "common/metrics.h"

namespace podvisor {
namespace {

// The longest a sandbox call waits for the hypervisor to finish initialising.
constexpr absl::Duration kInitWait = absl::Minutes(2);

constexpr absl::Duration kGuestCallTimeout = absl::Seconds(10);
constexpr absl::Duration kAgentShutdownTimeout = absl::Seconds(2);
constexpr absl::Duration kCloneAgentTimeout = absl::Seconds(20);
constexpr uint64_t kMiB = 1024 * 1024;
// Guest kernel, agent and page cache need this much beyond what the pod's containers ask for.
constexpr uint64_t kGuestOverheadMib = 128;

// The node's memory in MiB (MemTotal), or 0 when unknown.
uint64_t NodeMemoryMib() {
  absl::StatusOr<std::string> meminfo = ReadFile("/proc/meminfo");
  if (!meminfo.ok()) return 0;
  size_t at = meminfo->find("MemTotal:");
  unsigned long long kib = 0;
  if (at == std::string::npos || std::sscanf(meminfo->c_str() + at, "MemTotal: %llu kB", &kib) != 1) {
    return 0;
  }
  return kib / 1024;
}

// vCPUs and memory of the pod VM: the pod's own resources when it states them (plus what the
// guest itself needs), else the configured defaults. A VM that, with what QEMU needs besides,
// would not fit in the node's memory is refused.
absl::Status SizeVm(const SandboxConfig& config, const SandboxControllerOptions& options,
                    SandboxMetadata& meta) {
  meta.vcpus = options.default_vcpus;
  meta.memory_mib = options.default_memory_mib;
  if (config.cpu_quota > 0 && config.cpu_period > 0) {
    int64_t cpus = config.cpu_quota / config.cpu_period +
                   (config.cpu_quota % config.cpu_period != 0 ? 1 : 0);  // no overflow
    meta.vcpus = static_cast<uint32_t>(std::clamp<int64_t>(cpus, 1, 64));
  }
  if (config.memory_limit_bytes > 0) {
    // At most 2^43 MiB: the additions below cannot overflow.
    uint64_t mib = static_cast<uint64_t>(config.memory_limit_bytes) / kMiB +
                   (static_cast<uint64_t>(config.memory_limit_bytes) % kMiB != 0 ? 1 : 0);
    meta.memory_mib = std::max(options.default_memory_mib, mib + kGuestOverheadMib);
  }
  const uint64_t node_mib = options.node_memory_mib != 0 ? options.node_memory_mib
                                                         : NodeMemoryMib();
  if (node_mib != 0 && meta.memory_mib + kVmmOverheadMib > node_mib) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pod memory: a VM of ", meta.memory_mib, " MiB (the pod's limit plus ", kGuestOverheadMib,
        " MiB for the guest) and ", kVmmOverheadMib, " MiB for QEMU exceeds the node's ",
        node_mib, " MiB"));
  }
  return absl::OkStatus();
}

// The limits of the VM's cgroup: its memory plus QEMU's, and the pod's CPU quota.
VmCgroupLimits CgroupLimits(const SandboxConfig& config, const SandboxMetadata& meta) {
  VmCgroupLimits limits;
  limits.memory_bytes = (meta.memory_mib + kVmmOverheadMib) * kMiB;
  if (config.cpu_quota > 0 && config.cpu_period > 0) {
    limits.cpu_quota_us = config.cpu_quota;
    limits.cpu_period_us = config.cpu_period;
  }
  return limits;
}

// The guest's hostname: the one kubelet chose, else the pod's name cut to the 63 characters a
// hostname label may have (pod names may be longer).
std::string GuestHostname(const SandboxMetadata& meta) {
  if (!meta.hostname.empty()) return meta.hostname;
  std::string name = meta.pod_name.substr(0, 63);
  while (!name.empty() && (name.back() == '-' || name.back() == '.')) name.pop_back();
  return name;
}

}  // namespace

SandboxController::SandboxController(SandboxControllerOptions options, SandboxStore* sandboxes,
                                     Hypervisor* hypervisor, PodNetworkManager* network,
                                     AgentDialer dialer)
    : options_(std::move(options)),
      sandboxes_(sandboxes),
      hypervisor_(hypervisor),
      network_(network),
      dialer_(std::move(dialer)) {
  hypervisor_->SetExitCallback([this](const VmExitEvent& e) { OnVmExit(e); });
}

SandboxController::~SandboxController() {
  hypervisor_->SetExitCallback(nullptr);
  Detach();
}

std::shared_ptr<std::mutex> SandboxController::LockFor(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto& m = locks_[id];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

AgentClient::Options SandboxController::AgentOptions(const std::string& id) {
  AgentClient::Options o;
  o.host_version = "podvisord";
  o.connect_timeout = options_.boot_timeout;
  o.handshake_timeout = options_.boot_timeout;
  o.dead_after = options_.agent_dead_after;
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    generation = agent_generation_[id];
  }
  o.on_disconnect = [this, id, generation](const absl::Status& why) {
    {
      absl::MutexLock lock(&mu_);
      if (detaching_ || agent_generation_[id] != generation) return;  // dropped on purpose
    }
    PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": agent channel lost: " << why.message();
    metrics::CountAgentHeartbeatLoss();
    MarkNotReady(id, absl::StrCat("agent channel lost: ", why.message()));
  };
  o.on_event = [this, id](const AgentEvent& event) {
    if (hooks_.on_agent_event) hooks_.on_agent_event(id, event);
  };
  return o;
}

absl::StatusOr<std::shared_ptr<AgentClient>> SandboxController::ConnectAgent(
    const SandboxMetadata& meta, absl::Duration timeout) {
  AgentClient::Options o = AgentOptions(meta.id);
  o.connect_timeout = timeout;
  o.handshake_timeout = timeout;
  absl::StatusOr<std::unique_ptr<AgentClient>> agent =
      dialer_(absl::StrCat(meta.state_dir, "/agent.sock"), std::move(o));
  if (!agent.ok()) return WithContext(agent.status(), "agent");
  std::shared_ptr<AgentClient> shared = std::move(*agent);
  absl::MutexLock lock(&mu_);
  agents_[meta.id] = shared;
  return shared;
}

void SandboxController::DropAgent(const std::string& id) {
  std::shared_ptr<AgentClient> agent;
  {
    absl::MutexLock lock(&mu_);
    ++agent_generation_[id];
    auto it = agents_.find(id);
    if (it == agents_.end()) return;
    agent = std::move(it->second);
    agents_.erase(it);
  }
  agent->Close();
}

void SandboxController::MarkNotReady(const std::string& id, const std::string& reason) {
  auto updated = sandboxes_->Update(id, [&](SandboxStatus& st) {
    if (st.state == SandboxState::kNotReady) return absl::CancelledError("already not ready");
    st.state = SandboxState::kNotReady;
    st.reason = reason;
    return absl::OkStatus();
  });
  if (updated.ok()) {
    PV_LOG(kWarning) << "sandbox " << ShortId(id) << " NOTREADY: " << reason;
    if (hooks_.on_stopped) hooks_.on_stopped(id);
  }
}

void SandboxController::OnVmExit(const VmExitEvent& event) {
  {
    absl::MutexLock lock(&mu_);
    if (detaching_) return;
  }
  MarkNotReady(event.id, absl::StrCat("VM stopped (", event.reason, ")"));
}

// Picks the template a pod VM is cloned from, if any, and sizes the VM to it (memory rounded
// up to the template's; the containers' cgroup limits still hold inside).
std::optional<VmTemplate> SandboxController::ChooseTemplate(SandboxMetadata& meta) {
  if (!options_.find_template || meta.shared_dir.empty() || network_ == nullptr) {
    return std::nullopt;
  }
  std::optional<VmTemplate> t = options_.find_template(meta.vcpus, meta.memory_mib);
  if (!t) return std::nullopt;
  meta.vcpus = t->shape.vcpus;
  meta.memory_mib = t->shape.memory_mib;
  meta.template_key = t->key;
  meta.shared_fs_transport = "9p";
  return t;
}

absl::Status SandboxController::BootVm(const SandboxMetadata& meta, const PodNetwork* net,
                                       const VmTemplate* from) {
  VmSpec spec;
  spec.id = meta.id;
  spec.vcpus = meta.vcpus;
  spec.memory_mib = meta.memory_mib;
  spec.kernel = options_.kernel;
  spec.initrd = options_.initrd;
  spec.state_dir = meta.state_dir;
  spec.agent_socket = absl::StrCat(meta.state_dir, "/agent.sock");
  spec.console_log = absl::StrCat(meta.state_dir, "/console.log");
  spec.shared_dir = meta.shared_dir;
  if (!meta.cgroup_parent.empty()) {
    spec.cgroup_dirs = VmCgroup(options_.cgroup_root, meta.cgroup_parent, meta.id).Dirs();
  }
  if (meta.shared_fs_transport == "9p") spec.shared_fs_transport = SharedFsTransport::k9p;
  if (net) spec.nics.push_back(VmNic{net->tap_name, net->mac, net->netns_path});
  if (from == nullptr) return WithContext(hypervisor_->Create(spec), "create VM");
  spec.memory_file = from->memory_file;
  spec.restore_state = from->state_file;
  return WithContext(hypervisor_->Create(spec), absl::StrCat("clone VM from template ", from->key));
}

void SandboxController::RemoveVmCgroup(const SandboxMetadata& meta) {
  if (meta.cgroup_parent.empty()) return;
  if (absl::Status s = VmCgroup(options_.cgroup_root, meta.cgroup_parent, meta.id).Remove();
      !s.ok()) {
    PV_LOG(kWarning) << "sandbox " << ShortId(meta.id) << ": " << s.message();
  }
}

absl::Status SandboxController::SetupGuest(AgentClient& agent, const SandboxMetadata& meta,
                                           const PodNetwork* net) {
  SandboxSetup setup;
  setup.hostname = GuestHostname(meta);
  if (meta.dns) setup.dns = DnsConfig{meta.dns->servers, meta.dns->searches, meta.dns->options};
  setup.hosts.push_back(HostEntry{"127.0.0.1", {"localhost"}});
  setup.hosts.push_back(HostEntry{"::1", {"localhost", "ip6-localhost", "ip6-loopback"}});
  if (net && !net->PrimaryIp().empty()) {
    setup.hosts.push_back(HostEntry{net->PrimaryIp(), {setup.hostname}});
  }
  // A guest's clock and RNG must not be trusted to be fresh (VMs may be clones of a template).
  setup.wall_time_ns = absl::ToUnixNanos(absl::Now());
  setup.entropy = RandomBytes(64);
  setup.sysctls = meta.sysctls;
  if (!meta.shared_dir.empty()) setup.shared_fs_tag = kSharedFsTag;
  setup.shared_fs_type = meta.shared_fs_transport;
  // Fresh per VM: a clone would otherwise keep its template's.
  setup.machine_id = RandomHex(16);
  if (absl::Status s = agent.SetupSandbox(setup, kGuestCallTimeout); !s.ok()) {
    return WithContext(s, "agent: sandbox setup");
  }
  if (!net) return absl::OkStatus();
  NetworkSetup ns;
  GuestInterface iface;
  iface.mac = net->mac;
  if (!meta.template_key.empty()) {
    // The NIC's MAC is migrated device state: the clone's guest sees the template's.
    iface.mac = kTemplateMac;
    iface.set_mac = net->mac;
  }
  iface.name = net->interface_name;
  iface.mtu = static_cast<uint32_t>(std::max(net->mtu, 0));
  for (const PodIp& ip : net->ips) {
    iface.addresses.push_back(absl::StrCat(ip.address, "/", ip.prefix_length));
  }
  ns.interfaces.push_back(iface);
  for (const PodRoute& r : net->routes) {
    ns.routes.push_back(GuestRoute{r.destination, r.gateway, net->interface_name, 0});
  }
  return WithContext(agent.SetupNetwork(ns, kGuestCallTimeout), "agent: network setup");
}

absl::StatusOr<std::string> SandboxController::Run(const SandboxConfig& config) {
  if (config.pod_name.empty() || config.pod_namespace.empty() || config.pod_uid.empty()) {
    return absl::InvalidArgumentError("sandbox metadata needs name, namespace and uid");
  }
  if (absl::Status s = ValidatePodNetworkMode(static_cast<PodNetworkMode>(config.network_mode));
      !s.ok()) {
    return s;
  }
  if (config.pid_mode == NamespaceMode::kNode || config.ipc_mode == NamespaceMode::kNode) {
    return absl::InvalidArgumentError(
        "linux.security_context.namespace_options.pid/ipc=NODE: a pod VM cannot share the "
        "node's PID or IPC namespace");
  }
  if (absl::Status s = ValidateCgroupParent(config.cgroup_parent); !s.ok()) return s;
  if (absl::Status s = AwaitReady(); !s.ok()) return s;
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
  meta.log_directory = config.log_directory;
  meta.hostname = config.hostname;
  meta.created_at_ns = absl::ToUnixNanos(absl::Now());
  meta.dns = config.dns;
  meta.port_mappings = config.port_mappings;
  meta.sysctls = config.sysctls;
  meta.network_mode = config.network_mode;
  meta.pid_mode = config.pid_mode;
  meta.ipc_mode = config.ipc_mode;
  meta.user_namespace = config.user_namespace;
  meta.state_dir = absl::StrCat(options_.state_dir, "/vm/", meta.id.substr(0, 16));
  if (options_.shared_filesystem) {
    meta.shared_dir = absl::StrCat(meta.state_dir, "/shared");
    meta.shared_fs_transport = "virtiofs";
  }
  meta.cgroup_parent = config.cgroup_parent;
  if (absl::Status s = SizeVm(config, options_, meta); !s.ok()) return s;
  std::optional<VmTemplate> from = ChooseTemplate(meta);

  auto lock = LockFor(meta.id);
  std::lock_guard<std::mutex> guard(*lock);
  const absl::Time start = absl::Now();
  if (absl::Status s = sandboxes_->Add({meta, SandboxStatus{}}); !s.ok()) {
    if (s.code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat("pod sandbox ", s.message()));
    }
    return WithContext(s, "store sandbox");
  }
  bool network_set_up = false;
  absl::Cleanup undo = [&] {
    DropAgent(meta.id);
    if (absl::Status s = hypervisor_->Destroy(meta.id); !s.ok()) {
      PV_LOG(kError) << "undo run " << ShortId(meta.id) << ": destroy VM: " << s.message();
    }
    RemoveVmCgroup(meta);
    if (network_set_up) {
      if (absl::Status s = network_->Remove(meta.id); !s.ok()) {
        PV_LOG(kError) << "undo run " << ShortId(meta.id) << ": network: " << s.message();
      }
    }
    RemoveAll(meta.state_dir).IgnoreError();
    sandboxes_->Remove(meta.id).IgnoreError();
  };
  if (absl::Status s = MakeDirs(meta.state_dir, 0700); !s.ok()) return s;
  if (!meta.shared_dir.empty()) {
    if (absl::Status s = MakeDirs(meta.shared_dir, 0700); !s.ok()) return s;
    if (options_.shared_dir_max_bytes > 0) {
      if (absl::Status s = MountSharedDirectory(meta.shared_dir, options_.shared_dir_max_bytes);
          !s.ok()) {
        return s;
      }
    }
  }
  if (!meta.cgroup_parent.empty()) {
    VmCgroup cgroup(options_.cgroup_root, meta.cgroup_parent, meta.id);
    if (absl::Status s = cgroup.Create(CgroupLimits(config, meta)); !s.ok()) {
      return WithContext(s, "VM cgroup");
    }
  }

  std::optional<PodNetwork> net;
  if (network_) {
    PodNetworkRequest req{meta.id, meta.pod_name, meta.pod_namespace, meta.pod_uid, {}, {}};
    for (const auto& pm : meta.port_mappings) {
      req.port_mappings.push_back({pm.protocol, pm.container_port, pm.host_port, pm.host_ip});
    }
    if (meta.dns) req.dns = PodDnsConfig{meta.dns->servers, meta.dns->searches, meta.dns->options};
    network_set_up = true;  // Setup undoes its own partial work, Remove is idempotent
    absl::StatusOr<PodNetwork> n = network_->Setup(req);
    if (!n.ok()) return WithContext(n.status(), "pod network");
    net = std::move(*n);
  }
  const absl::Time net_done = absl::Now();
  auto start_vm = [&](const VmTemplate* t) -> absl::StatusOr<std::shared_ptr<AgentClient>> {
    if (absl::Status s = BootVm(meta, net ? &*net : nullptr, t); !s.ok()) return s;
    // A clone's agent answers within milliseconds of the restore.
    absl::StatusOr<std::shared_ptr<AgentClient>> agent =
        ConnectAgent(meta, t ? std::min(options_.boot_timeout, kCloneAgentTimeout)
                             : options_.boot_timeout);
    if (!agent.ok()) {
      return WithContext(agent.status(), absl::StrCat("boot VM (console log: ", meta.state_dir,
                                                       "/console.log)"));
    }
    return agent;
  };
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = start_vm(from ? &*from : nullptr);
  if (!agent.ok() && from) {
    // A template that cannot be cloned must not cost the pod: it boots cold, and its record
    // says so.
    PV_LOG(kWarning) << "sandbox " << ShortId(meta.id) << ": " << agent.status().message()
                     << "; booting it cold";
    DropAgent(meta.id);
    if (absl::Status s = hypervisor_->Destroy(meta.id); !s.ok()) return s;
    SandboxMetadata cold = meta;
    cold.template_key.clear();
    cold.shared_fs_transport = "virtiofs";
    if (absl::Status s = SizeVm(config, options_, cold); !s.ok()) return s;
    absl::Status replaced = sandboxes_->Remove(meta.id);
    if (replaced.ok()) replaced = sandboxes_->Add({cold, SandboxStatus{}});
    if (!replaced.ok()) return WithContext(replaced, "store sandbox");
    meta = std::move(cold);
    from.reset();
    agent = start_vm(nullptr);
  }
  if (!agent.ok()) return agent.status();
  const absl::Time booted = absl::Now();
  if (absl::Status s = SetupGuest(**agent, meta, net ? &*net : nullptr); !s.ok()) return s;

  absl::StatusOr<VmStatus> vm = hypervisor_->Status(meta.id);
  auto updated = sandboxes_->Update(meta.id, [&](SandboxStatus& st) {
    st.state = SandboxState::kReady;
    st.run_completed = true;
    st.vm_pid = vm.ok() ? vm->qemu_pid : 0;
    st.accelerator = hypervisor_->Accelerator();
    st.boot_ms = absl::ToInt64Milliseconds(booted - net_done);
    st.agent_version = (*agent)->info().agent_version;
    st.kernel_release = (*agent)->info().kernel_release;
    if (net) {
      st.ip = net->PrimaryIp();
      st.additional_ips = net->AdditionalIps();
    }
    return absl::OkStatus();
  });
  if (!updated.ok()) return WithContext(updated.status(), "store sandbox");
  std::move(undo).Cancel();
  // A clone that fell back to a cold boot has no template key any more: it counts as cold.
  metrics::ObserveVmStart(meta.template_key.empty() ? "cold" : "clone",
                          absl::ToDoubleSeconds(booted - net_done));
  PV_LOG(kInfo) << "sandbox " << ShortId(meta.id) << " (" << meta.name << ") ready in "
                << absl::ToInt64Milliseconds(absl::Now() - start) << " ms (network "
                << absl::ToInt64Milliseconds(net_done - start) << " ms, boot "
                << absl::ToInt64Milliseconds(booted - net_done) << " ms "
                << (from ? "cloned from template " + from->key : std::string("cold")) << ", "
                << hypervisor_->Accelerator() << ")";
  return meta.id;
}

absl::Status SandboxController::StopLocked(const Sandbox& sandbox) {
  const std::string& id = sandbox.metadata.id;
  if (sandbox.status.stopped) return absl::OkStatus();
  std::shared_ptr<AgentClient> agent;
  {
    absl::MutexLock lock(&mu_);
    ++agent_generation_[id];
    auto it = agents_.find(id);
    if (it != agents_.end()) {
      agent = std::move(it->second);
      agents_.erase(it);
    }
  }
  if (agent) {
    // A clean power-off from inside lets the guest flush; the hypervisor's bounded stop below
    // destroys whatever is left.
    if (agent->connected()) {
      absl::Status s = agent->Shutdown(false, absl::ZeroDuration(), kAgentShutdownTimeout);
      if (!s.ok()) PV_LOG(kDebug) << "sandbox " << ShortId(id) << ": agent shutdown: " << s;
    }
    agent->Close();
  }
  if (absl::Status s = hypervisor_->Stop(id, options_.stop_timeout); !s.ok()) {
    return WithContext(s, absl::StrCat("stop sandbox ", ShortId(id), ": VM"));
  }
  RemoveVmCgroup(sandbox.metadata);
  if (network_) {
    if (absl::Status s = network_->Teardown(id); !s.ok()) {
      return WithContext(s, absl::StrCat("stop sandbox ", ShortId(id), ": network"));
    }
  }
  auto updated = sandboxes_->Update(id, [](SandboxStatus& st) {
    st.state = SandboxState::kNotReady;
    st.stopped = true;
    st.vm_pid = 0;
    return absl::OkStatus();
  });
  if (updated.ok() && hooks_.on_stopped) hooks_.on_stopped(id);
  return updated.status();
}

absl::Status SandboxController::Stop(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();  // kubelet retries freely
  if (!id.ok()) return id.status();
  if (absl::Status s = AwaitReady(); !s.ok()) return s;
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
  if (absl::IsNotFound(sandbox.status())) return absl::OkStatus();
  if (!sandbox.ok()) return sandbox.status();
  return StopLocked(*sandbox);
}

absl::Status SandboxController::Remove(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  if (absl::Status s = AwaitReady(); !s.ok()) return s;
  auto lock = LockFor(*id);
  {
    std::lock_guard<std::mutex> guard(*lock);
    absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
    if (absl::IsNotFound(sandbox.status())) return absl::OkStatus();
    if (!sandbox.ok()) return sandbox.status();
    if (absl::Status s = StopLocked(*sandbox); !s.ok()) return s;
    if (hooks_.before_remove) {
      if (absl::Status s = hooks_.before_remove(*id); !s.ok()) {
        return WithContext(s, absl::StrCat("remove sandbox ", ShortId(*id), ": containers"));
      }
    }
    if (network_) {
      if (absl::Status s = network_->Remove(*id); !s.ok()) {
        return WithContext(s, absl::StrCat("remove sandbox ", ShortId(*id), ": network"));
      }
    }
    RemoveVmCgroup(sandbox->metadata);  // a stop that could not remove it (processes left)
    if (absl::Status s = RemoveAll(sandbox->metadata.state_dir); !s.ok()) {
      return WithContext(s, absl::StrCat("remove sandbox ", ShortId(*id)));
    }
    if (absl::Status s = sandboxes_->Remove(*id); !s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  locks_.erase(*id);
  agent_generation_.erase(*id);
  PV_LOG(kInfo) << "sandbox " << ShortId(*id) << " removed";
  return absl::OkStatus();
}

absl::StatusOr<SandboxInfo> SandboxController::Inspect(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
  if (!sandbox.ok()) return sandbox.status();
  if (!sandbox->status.run_completed) {
    return absl::NotFoundError(absl::StrCat("sandbox ", *id, " is still being created"));
  }
  SandboxInfo info{*sandbox, false, {}};
  {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(*id);
    info.agent_connected = it != agents_.end() && it->second->connected();
  }
  if (absl::StatusOr<VmStatus> vm = hypervisor_->Status(*id); vm.ok()) info.vm = *vm;
  return info;
}

std::vector<Sandbox> SandboxController::List(const SandboxFilter& filter) const {
  std::vector<Sandbox> out;
  for (Sandbox& s : sandboxes_->List()) {
    // A sandbox whose RunPodSandbox has not answered yet is nobody's to see: kubelet would take
    // an unknown NOTREADY sandbox of its pod for a dead one and start another.
    if (s.status.run_completed && SandboxMatches(s, filter)) out.push_back(std::move(s));
  }
  return out;
}

void SandboxController::SetReady(absl::Status status) {
  absl::MutexLock lock(&mu_);
  ready_ = std::move(status);
  ready_set_ = true;
}

absl::Status SandboxController::ReadyStatus() const {
  absl::MutexLock lock(&mu_);
  if (!ready_set_) return absl::UnavailableError("podvisord is initialising the hypervisor");
  return ready_;
}

absl::Status SandboxController::AwaitReady() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ready_set_; };
  // Initialisation (libvirt's first QEMU capability probe, the warm-up VM, a KVM probe) is not a
  // guest boot: it takes ~9 s on a fresh root under TCG however short the boot timeout is, and a
  // RunPodSandbox that arrives meanwhile is better served late than refused.
  const absl::Duration wait = std::max(options_.boot_timeout, kInitWait);
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), wait)) {
    return absl::UnavailableError("podvisord is still initialising the hypervisor; retry");
  }
  if (!ready_.ok()) return WithContext(ready_, "runtime not ready");
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<AgentClient>> SandboxController::Agent(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(id);
  if (it == agents_.end() || !it->second->connected()) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox ", ShortId(id), " is not ready (no agent connection)"));
  }
  return it->second;
}

absl::StatusOr<VmHostStats> SandboxController::HostStats(const std::string& id) {
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(id);
  if (!sandbox.ok()) return sandbox.status();
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("sandbox ", ShortId(id), " is not ready"));
  }
  VmHostStats out;
  out.timestamp_ns = absl::ToUnixNanos(absl::Now());
  absl::StatusOr<VmStatus> vm = hypervisor_->Status(id);
  if (vm.ok() && vm->qemu_pid > 0) {
    out.qemu_pid = vm->qemu_pid;
    absl::StatusOr<ProcessCost> cost = ReadProcessCost(vm->qemu_pid);
    if (cost.ok()) {
      out.vm = *cost;
    } else {
      PV_LOG(kDebug) << "sandbox " << ShortId(id) << ": VM cost: " << cost.status();
    }
  }
  if (network_ && sandbox->metadata.network_mode != NamespaceMode::kNode) {
    absl::StatusOr<PodNetwork> net = network_->Get(id);
    if (net.ok()) {
      out.default_interface = net->interface_name;
      absl::StatusOr<std::vector<InterfaceUsage>> ifaces = ReadNetnsInterfaces(net->netns_path);
      if (ifaces.ok()) {
        // The tap only mirrors the CNI interface's traffic: counting both would count it twice.
        for (InterfaceUsage& u : *ifaces) {
          if (u.name != net->tap_name) out.interfaces.push_back(std::move(u));
        }
      } else {
        PV_LOG(kDebug) << "sandbox " << ShortId(id) << ": network stats: " << ifaces.status();
      }
    }
  }
  return out;
}

void SandboxController::Detach() {
  std::map<std::string, std::shared_ptr<AgentClient>> agents;
  {
    absl::MutexLock lock(&mu_);
    detaching_ = true;
    agents.swap(agents_);
  }
  for (auto& [id, agent] : agents) agent->Close();
}

absl::Status SandboxController::Recover() {
  absl::StatusOr<std::vector<VmInfo>> vms = hypervisor_->List();
  if (!vms.ok()) return WithContext(vms.status(), "list VMs");
  std::set<std::string> known;
  for (const Sandbox& sb : sandboxes_->List()) {
    const std::string& id = sb.metadata.id;
    known.insert(id);
    if (!sb.status.run_completed) {
      // A RunPodSandbox that a crash interrupted: nobody got this id; undo it all.
      PV_LOG(kWarning) << "sandbox " << ShortId(id) << ": cleaning up an interrupted run";
      hypervisor_->Destroy(id).IgnoreError();
      RemoveVmCgroup(sb.metadata);
      if (network_) network_->Remove(id).IgnoreError();
      RemoveAll(sb.metadata.state_dir).IgnoreError();
      sandboxes_->Remove(id).IgnoreError();
      continue;
    }
    if (sb.status.state != SandboxState::kReady) {
      // A crash between the VM's end and the cgroup's removal leaves an empty cgroup.
      absl::StatusOr<VmStatus> vm = hypervisor_->Status(id);
      if (vm.ok() && vm->state == VmState::kAbsent) RemoveVmCgroup(sb.metadata);
      continue;
    }
    absl::StatusOr<VmStatus> vm = hypervisor_->Status(id);
    if (!vm.ok() || vm->state != VmState::kRunning) {
      MarkNotReady(id, "VM is gone (found at daemon start)");
      RemoveVmCgroup(sb.metadata);
      continue;
    }
    absl::StatusOr<std::shared_ptr<AgentClient>> agent =
        ConnectAgent(sb.metadata, options_.reattach_timeout);
    if (!agent.ok()) {
      MarkNotReady(id, absl::StrCat("agent unreachable at daemon start: ",
                                    agent.status().message()));
      continue;
    }
    sandboxes_->Update(id, [&](SandboxStatus& st) {
      st.vm_pid = vm->qemu_pid;
      return absl::OkStatus();
    }).IgnoreError();
    metrics::CountAgentReconnect();
    PV_LOG(kInfo) << "sandbox " << ShortId(id) << " re-attached (VM pid " << vm->qemu_pid << ")";
  }
  for (const VmInfo& vm : *vms) {
    if (known.contains(vm.id)) continue;
    PV_LOG(kWarning) << "destroying VM " << vm.id << ": no sandbox record owns it";
    hypervisor_->Destroy(vm.id).IgnoreError();
  }
  if (network_) {
    for (const std::string& id : network_->ListSandboxIds()) {
      if (known.contains(id)) continue;
      PV_LOG(kWarning) << "removing pod network " << ShortId(id) << ": no sandbox record owns it";
      network_->Remove(id).IgnoreError();
    }
  }
  return absl::OkStatus();
}

}  // namespace podvisor
