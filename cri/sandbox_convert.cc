#include "cri/sandbox_convert.h"

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "cri/container_convert.h"
#include "nlohmann/json.hpp"

namespace podvisor::cri {
namespace {

NamespaceMode FromProto(runtime::v1::NamespaceMode mode) {
  switch (mode) {
    case runtime::v1::POD:
      return NamespaceMode::kPod;
    case runtime::v1::CONTAINER:
      return NamespaceMode::kContainer;
    case runtime::v1::NODE:
      return NamespaceMode::kNode;
    case runtime::v1::TARGET:
      return NamespaceMode::kTarget;
    default:
      return NamespaceMode::kPod;
  }
}

runtime::v1::NamespaceMode ToProto(NamespaceMode mode) {
  return static_cast<runtime::v1::NamespaceMode>(static_cast<int>(mode));
}

absl::StatusOr<std::string> ProtocolName(runtime::v1::Protocol p) {
  switch (p) {
    case runtime::v1::TCP:
      return std::string("tcp");
    case runtime::v1::UDP:
      return std::string("udp");
    case runtime::v1::SCTP:
      return std::string("sctp");
    default:
      return absl::InvalidArgumentError(absl::StrCat("port_mappings: unknown protocol ", p));
  }
}

IdRange FromProto(const runtime::v1::IDMapping& m) {
  return IdRange{m.container_id(), m.host_id(), m.length()};
}

void ToProto(const IdRange& r, runtime::v1::IDMapping* out) {
  out->set_container_id(r.container_id);
  out->set_host_id(r.host_id);
  out->set_length(r.length);
}

}  // namespace

absl::StatusOr<std::optional<PodUserNamespace>> UserNamespaceFromProto(
    const runtime::v1::NamespaceOption& ns) {
  if (!ns.has_userns_options()) return std::nullopt;
  const runtime::v1::UserNamespace& u = ns.userns_options();
  switch (u.mode()) {
    case runtime::v1::NODE:
      if (u.uids_size() != 0 || u.gids_size() != 0) {
        return absl::InvalidArgumentError(
            "userns_options: mode NODE (the node's user namespace) takes no uid or gid mappings");
      }
      return std::nullopt;
    case runtime::v1::POD:
      break;
    default: {
      std::string name = runtime::v1::NamespaceMode_Name(u.mode());
      if (name.empty()) name = absl::StrCat(static_cast<int>(u.mode()));
      return absl::InvalidArgumentError(
          absl::StrCat("userns_options: mode ", name,
                       " is not supported: a pod has the node's user namespace (NODE) or one of "
                       "its own (POD)"));
    }
  }
  if (u.uids_size() != 1 || u.gids_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("userns_options: mode POD needs exactly one uid and one gid mapping (got ",
                     u.uids_size(), " and ", u.gids_size(), ")"));
  }
  PodUserNamespace out{FromProto(u.uids(0)), FromProto(u.gids(0))};
  if (absl::Status s = ValidatePodUserNamespace(out); !s.ok()) return s;
  return out;
}

runtime::v1::PodSandboxState ToProto(SandboxState state) {
  return state == SandboxState::kReady ? runtime::v1::SANDBOX_READY : runtime::v1::SANDBOX_NOTREADY;
}

SandboxState FromProto(runtime::v1::PodSandboxState state) {
  return state == runtime::v1::SANDBOX_READY ? SandboxState::kReady : SandboxState::kNotReady;
}

void ToProto(const Sandbox& sandbox, runtime::v1::PodSandbox* out) {
  const SandboxMetadata& m = sandbox.metadata;
  out->set_id(m.id);
  runtime::v1::PodSandboxMetadata* meta = out->mutable_metadata();
  meta->set_name(m.pod_name);
  meta->set_namespace_(m.pod_namespace);
  meta->set_uid(m.pod_uid);
  meta->set_attempt(m.attempt);
  out->set_state(ToProto(sandbox.status.state));
  out->set_created_at(m.created_at_ns);
  out->mutable_labels()->insert(m.labels.begin(), m.labels.end());
  out->mutable_annotations()->insert(m.annotations.begin(), m.annotations.end());
  out->set_runtime_handler(m.runtime_handler);
}

SandboxFilter FromProto(const runtime::v1::PodSandboxFilter& filter) {
  SandboxFilter out;
  out.id_prefix = filter.id();
  if (filter.has_state()) out.state = FromProto(filter.state().state());
  out.label_selector.insert(filter.label_selector().begin(), filter.label_selector().end());
  return out;
}

absl::StatusOr<SandboxConfig> FromProto(const runtime::v1::RunPodSandboxRequest& request) {
  if (!request.has_config()) return absl::InvalidArgumentError("config is required");
  const runtime::v1::PodSandboxConfig& c = request.config();
  SandboxConfig out;
  out.pod_name = c.metadata().name();
  out.pod_namespace = c.metadata().namespace_();
  out.pod_uid = c.metadata().uid();
  out.attempt = c.metadata().attempt();
  if (out.pod_name.empty()) return absl::InvalidArgumentError("config.metadata.name is required");
  if (out.pod_namespace.empty()) {
    return absl::InvalidArgumentError("config.metadata.namespace is required");
  }
  if (out.pod_uid.empty()) return absl::InvalidArgumentError("config.metadata.uid is required");
  out.hostname = c.hostname();
  if (out.hostname.size() > 63) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.hostname \"", out.hostname, "\" is longer than 63 characters"));
  }
  out.log_directory = c.log_directory();
  if (HasDotDot(out.log_directory)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.log_directory \"", out.log_directory, "\" has a \"..\" component"));
  }
  if (c.has_dns_config()) {
    const auto& d = c.dns_config();
    out.dns = SandboxDns{{d.servers().begin(), d.servers().end()},
                         {d.searches().begin(), d.searches().end()},
                         {d.options().begin(), d.options().end()}};
  }
  for (const auto& pm : c.port_mappings()) {
    absl::StatusOr<std::string> proto = ProtocolName(pm.protocol());
    if (!proto.ok()) return proto.status();
    if (pm.container_port() < 0 || pm.container_port() > 65535 || pm.host_port() < 0 ||
        pm.host_port() > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("port_mappings: port out of range: ",
                                                     pm.container_port(), ":", pm.host_port()));
    }
    out.port_mappings.push_back({*proto, pm.container_port(), pm.host_port(), pm.host_ip()});
  }
  out.labels.insert(c.labels().begin(), c.labels().end());
  out.annotations.insert(c.annotations().begin(), c.annotations().end());
  out.runtime_handler = request.runtime_handler();
  if (c.has_linux()) {
    const auto& l = c.linux();
    out.cgroup_parent = l.cgroup_parent();
    out.sysctls.insert(l.sysctls().begin(), l.sysctls().end());
    const auto& ns = l.security_context().namespace_options();
    out.network_mode = FromProto(ns.network());
    out.pid_mode = FromProto(ns.pid());
    out.ipc_mode = FromProto(ns.ipc());
    out.privileged = l.security_context().privileged();
    absl::StatusOr<std::optional<PodUserNamespace>> userns = UserNamespaceFromProto(ns);
    if (!userns.ok()) return userns.status();
    out.user_namespace = *userns;
    if (out.user_namespace &&
        (out.network_mode == NamespaceMode::kNode || out.pid_mode == NamespaceMode::kNode ||
         out.ipc_mode == NamespaceMode::kNode)) {
      return absl::InvalidArgumentError(
          "a pod with a user namespace of its own (userns_options mode POD) cannot share the "
          "node's network, PID or IPC namespace");
    }
    // Kubelet sends the pod's policy to each container too, where it applies; the sandbox has no
    // process of its own to give groups to, so here it is only checked.
    const runtime::v1::SupplementalGroupsPolicy policy =
        l.security_context().supplemental_groups_policy();
    if (policy != runtime::v1::Merge && policy != runtime::v1::Strict) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.linux.security_context.supplemental_groups_policy: unknown value ",
                       static_cast<int>(policy), " (Merge or Strict)"));
    }
    const runtime::v1::LinuxContainerResources& r =
        l.has_resources() ? l.resources() : l.overhead();
    const int64_t overhead_quota = l.has_resources() ? l.overhead().cpu_quota() : 0;
    const int64_t overhead_memory = l.has_resources() ? l.overhead().memory_limit_in_bytes() : 0;
    for (int64_t v : {r.cpu_quota(), overhead_quota, r.cpu_period(), r.memory_limit_in_bytes(),
                      overhead_memory}) {
      if (v < 0) {
        return absl::InvalidArgumentError(
            "linux.resources/overhead: cpu_quota, cpu_period and memory_limit_in_bytes must not "
            "be negative");
      }
    }
    if (__builtin_add_overflow(r.cpu_quota(), overhead_quota, &out.cpu_quota) ||
        __builtin_add_overflow(r.memory_limit_in_bytes(), overhead_memory,
                               &out.memory_limit_bytes)) {
      return absl::InvalidArgumentError(
          "linux.resources + linux.overhead: the pod's CPU quota or memory limit overflows");
    }
    out.cpu_period = r.cpu_period();
  }
  return out;
}

void ToProto(const SandboxInfo& info, runtime::v1::PodSandboxStatus* out) {
  const SandboxMetadata& m = info.sandbox.metadata;
  const SandboxStatus& st = info.sandbox.status;
  out->set_id(m.id);
  runtime::v1::PodSandboxMetadata* meta = out->mutable_metadata();
  meta->set_name(m.pod_name);
  meta->set_namespace_(m.pod_namespace);
  meta->set_uid(m.pod_uid);
  meta->set_attempt(m.attempt);
  out->set_state(ToProto(st.state));
  out->set_created_at(m.created_at_ns);
  if (!st.ip.empty()) {
    out->mutable_network()->set_ip(st.ip);
    for (const std::string& ip : st.additional_ips) {
      out->mutable_network()->add_additional_ips()->set_ip(ip);
    }
  }
  runtime::v1::NamespaceOption* ns = out->mutable_linux()->mutable_namespaces()->mutable_options();
  ns->set_network(ToProto(m.network_mode));
  ns->set_pid(ToProto(m.pid_mode));
  ns->set_ipc(ToProto(m.ipc_mode));
  runtime::v1::UserNamespace* userns = ns->mutable_userns_options();
  if (m.user_namespace) {
    userns->set_mode(runtime::v1::POD);
    ToProto(m.user_namespace->uids, userns->add_uids());
    ToProto(m.user_namespace->gids, userns->add_gids());
  } else {
    userns->set_mode(runtime::v1::NODE);
  }
  out->mutable_labels()->insert(m.labels.begin(), m.labels.end());
  out->mutable_annotations()->insert(m.annotations.begin(), m.annotations.end());
  out->set_runtime_handler(m.runtime_handler);
}

std::string VerboseInfo(const SandboxInfo& info) {
  const SandboxMetadata& m = info.sandbox.metadata;
  const SandboxStatus& st = info.sandbox.status;
  const char* vm_state = "absent";
  switch (info.vm.state) {
    case VmState::kRunning:
      vm_state = "running";
      break;
    case VmState::kPaused:
      vm_state = "paused";
      break;
    case VmState::kStopped:
      vm_state = "stopped";
      break;
    case VmState::kAbsent:
      break;
  }
  if (m.handler == "host") {
    return nlohmann::json{{"name", m.name},
                          {"handler", m.handler},
                          {"host", {{"holderPid", st.vm_pid}, {"stateDir", m.state_dir},
                                    {"cgroupParent", m.cgroup_parent},
                                    {"privileged", m.privileged}}},
                          {"notReadyReason", st.reason}}
        .dump();
  }
  nlohmann::json j = {
      {"name", m.name},
      {"handler", m.handler},
      {"vm",
       {{"state", vm_state},
        {"pid", info.vm.qemu_pid},
        {"accelerator", st.accelerator},
        {"vcpus", m.vcpus},
        {"memoryMiB", m.memory_mib},
        {"bootMillis", st.boot_ms},
        {"template", m.template_key},
        {"sharedFs", m.shared_fs_transport},
        {"stateDir", m.state_dir}}},
      {"agent",
       {{"connected", info.agent_connected},
        {"version", st.agent_version},
        {"kernelRelease", st.kernel_release}}},
      {"notReadyReason", st.reason},
  };
  return j.dump();
}

SandboxFilter FromProto(const runtime::v1::PodSandboxStatsFilter& filter) {
  SandboxFilter out;
  out.id_prefix = filter.id();
  out.label_selector.insert(filter.label_selector().begin(), filter.label_selector().end());
  return out;
}

void ToProto(const SandboxStatsInfo& info, runtime::v1::PodSandboxStats* out) {
  const SandboxMetadata& m = info.sandbox.metadata;
  runtime::v1::PodSandboxAttributes* a = out->mutable_attributes();
  a->set_id(m.id);
  a->mutable_metadata()->set_name(m.pod_name);
  a->mutable_metadata()->set_namespace_(m.pod_namespace);
  a->mutable_metadata()->set_uid(m.pod_uid);
  a->mutable_metadata()->set_attempt(m.attempt);
  a->mutable_labels()->insert(m.labels.begin(), m.labels.end());
  a->mutable_annotations()->insert(m.annotations.begin(), m.annotations.end());
  runtime::v1::LinuxPodSandboxStats* linux_stats = out->mutable_linux();
  const int64_t now = info.host.timestamp_ns;
  // The pod's CPU and memory are what the node pays for its VM: the QEMU process (guest kernel,
  // containers, device emulation and, under TCG, the translator).
  if (info.host.vm) {
    const ProcessCost& vm = *info.host.vm;
    runtime::v1::CpuUsage* cpu = linux_stats->mutable_cpu();
    cpu->set_timestamp(now);
    cpu->mutable_usage_core_nano_seconds()->set_value(vm.cpu_ns);
    if (info.vm_nano_cores) cpu->mutable_usage_nano_cores()->set_value(*info.vm_nano_cores);
    runtime::v1::MemoryUsage* mem = linux_stats->mutable_memory();
    mem->set_timestamp(now);
    mem->mutable_working_set_bytes()->set_value(vm.rss_bytes);
    mem->mutable_usage_bytes()->set_value(vm.rss_bytes);
    // Guest RAM is anonymous memory, or a shared memfd when the pod has a virtiofs directory.
    mem->mutable_rss_bytes()->set_value(vm.anon_bytes + vm.shmem_bytes);
    mem->mutable_page_faults()->set_value(vm.minor_faults);
    mem->mutable_major_page_faults()->set_value(vm.major_faults);
    // What the pod's containers can still use: the guest's MemAvailable.
    if (info.guest) mem->mutable_available_bytes()->set_value(info.guest->memory_available_bytes);
  }
  if (!info.host.interfaces.empty()) {
    runtime::v1::NetworkUsage* net = linux_stats->mutable_network();
    net->set_timestamp(now);
    for (const InterfaceUsage& u : info.host.interfaces) {
      runtime::v1::NetworkInterfaceUsage* i = net->add_interfaces();
      i->set_name(u.name);
      i->mutable_rx_bytes()->set_value(u.rx_bytes);
      i->mutable_rx_errors()->set_value(u.rx_errors);
      i->mutable_tx_bytes()->set_value(u.tx_bytes);
      i->mutable_tx_errors()->set_value(u.tx_errors);
      if (u.name == info.host.default_interface) *net->mutable_default_interface() = *i;
    }
  }
  if (info.guest) {
    linux_stats->mutable_process()->set_timestamp(info.guest->timestamp_ns);
    linux_stats->mutable_process()->mutable_process_count()->set_value(info.guest->process_count);
  }
  for (const ContainerStatsInfo& c : info.containers) ToProto(c, linux_stats->add_containers());
}

}  // namespace podvisor::cri
