#include "cri/container_convert.h"

#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/image_volume.h"
#include "common/fs.h"
#include "cri/sandbox_convert.h"
#include "nlohmann/json.hpp"

namespace podvisor::cri {
namespace {

void Metadata(const Container& c, runtime::v1::ContainerMetadata* out) {
  out->set_name(c.metadata.config.name);
  out->set_attempt(c.metadata.config.attempt);
}

void Image(const Container& c, runtime::v1::ImageSpec* out) {
  out->set_image(c.metadata.config.image);
  out->set_user_specified_image(c.metadata.config.image);
}

// The deprecated seccomp_profile_path, which older kubelets still send instead of seccomp.
std::string LegacySeccompProfilePath(const runtime::v1::LinuxContainerSecurityContext& sc) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  return sc.seccomp_profile_path();
#pragma GCC diagnostic pop
}

}  // namespace

// By the names of the CRI enum (runtime::v1::Signal_Name), not its constants: <signal.h>
// defines the same names as macros.
int SignalNumber(runtime::v1::Signal signal) {
  static const std::pair<const char*, int> kSignals[] = {
      {"SIGABRT", SIGABRT},     {"SIGALRM", SIGALRM},   {"SIGBUS", SIGBUS},
      {"SIGCHLD", SIGCHLD},     {"SIGCLD", SIGCHLD},    {"SIGCONT", SIGCONT},
      {"SIGFPE", SIGFPE},       {"SIGHUP", SIGHUP},     {"SIGILL", SIGILL},
      {"SIGINT", SIGINT},       {"SIGIO", SIGIO},       {"SIGIOT", SIGIOT},
      {"SIGKILL", SIGKILL},     {"SIGPIPE", SIGPIPE},   {"SIGPOLL", SIGPOLL},
      {"SIGPROF", SIGPROF},     {"SIGPWR", SIGPWR},     {"SIGQUIT", SIGQUIT},
      {"SIGSEGV", SIGSEGV},     {"SIGSTKFLT", SIGSTKFLT}, {"SIGSTOP", SIGSTOP},
      {"SIGSYS", SIGSYS},       {"SIGTERM", SIGTERM},   {"SIGTRAP", SIGTRAP},
      {"SIGTSTP", SIGTSTP},     {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},
      {"SIGURG", SIGURG},       {"SIGUSR1", SIGUSR1},   {"SIGUSR2", SIGUSR2},
      {"SIGVTALRM", SIGVTALRM}, {"SIGWINCH", SIGWINCH}, {"SIGXCPU", SIGXCPU},
      {"SIGXFSZ", SIGXFSZ}};
  // The real-time range as the C library numbers it for programs (34..64), as kubelet does.
  constexpr int kRtMin = 34;
  constexpr int kRtMax = 64;
  if (!runtime::v1::Signal_IsValid(signal)) return 0;
  const std::string& name = runtime::v1::Signal_Name(signal);
  for (const auto& [n, number] : kSignals) {
    if (name == n) return number;
  }
  int k = 0;
  if (name == "SIGRTMIN") return kRtMin;
  if (name == "SIGRTMAX") return kRtMax;
  if (absl::StartsWith(name, "SIGRTMINPLUS") && absl::SimpleAtoi(name.substr(12), &k)) {
    return kRtMin + k;
  }
  if (absl::StartsWith(name, "SIGRTMAXMINUS") && absl::SimpleAtoi(name.substr(13), &k)) {
    return kRtMax - k;
  }
  return 0;
}

runtime::v1::Signal ToProtoSignal(int number) {
  if (number <= 0) return runtime::v1::RUNTIME_DEFAULT;
  const google::protobuf::EnumDescriptor* d = runtime::v1::Signal_descriptor();
  for (int i = 0; i < d->value_count(); ++i) {
    const auto s = static_cast<runtime::v1::Signal>(d->value(i)->number());
    if (s != runtime::v1::RUNTIME_DEFAULT && SignalNumber(s) == number) return s;
  }
  return runtime::v1::RUNTIME_DEFAULT;
}

runtime::v1::ContainerState ToProto(ContainerState state) {
  switch (state) {
    case ContainerState::kCreated:
      return runtime::v1::CONTAINER_CREATED;
    case ContainerState::kRunning:
      return runtime::v1::CONTAINER_RUNNING;
    case ContainerState::kExited:
      return runtime::v1::CONTAINER_EXITED;
    default:
      return runtime::v1::CONTAINER_UNKNOWN;
  }
}

ContainerLimits FromProto(const runtime::v1::LinuxContainerResources& r) {
  ContainerLimits out;
  out.cpu_period = r.cpu_period();
  out.cpu_quota = r.cpu_quota();
  out.cpu_shares = r.cpu_shares();
  out.memory_limit_bytes = r.memory_limit_in_bytes();
  out.cpuset_cpus = r.cpuset_cpus();
  out.cpuset_mems = r.cpuset_mems();
  out.memory_swap_limit_bytes = r.memory_swap_limit_in_bytes();
  out.oom_score_adj = r.oom_score_adj();
  for (const runtime::v1::HugepageLimit& h : r.hugepage_limits()) {
    out.hugepage_limits[h.page_size()] = h.limit();
  }
  out.unified.insert(r.unified().begin(), r.unified().end());
  return out;
}

void ToProto(const ContainerLimits& l, runtime::v1::LinuxContainerResources* r) {
  r->set_cpu_period(l.cpu_period);
  r->set_cpu_quota(l.cpu_quota);
  r->set_cpu_shares(l.cpu_shares);
  r->set_memory_limit_in_bytes(l.memory_limit_bytes);
  r->set_cpuset_cpus(l.cpuset_cpus);
  r->set_cpuset_mems(l.cpuset_mems);
  r->set_memory_swap_limit_in_bytes(l.memory_swap_limit_bytes);
  r->set_oom_score_adj(l.oom_score_adj);
  for (const auto& [size, limit] : l.hugepage_limits) {
    runtime::v1::HugepageLimit* h = r->add_hugepage_limits();
    h->set_page_size(size);
    h->set_limit(limit);
  }
  r->mutable_unified()->insert(l.unified.begin(), l.unified.end());
}

absl::StatusOr<ContainerConfig> FromProto(const runtime::v1::ContainerConfig& in) {
  ContainerConfig c;
  if (!in.has_metadata() || in.metadata().name().empty()) {
    return absl::InvalidArgumentError("config.metadata.name is required");
  }
  c.name = in.metadata().name();
  c.attempt = in.metadata().attempt();
  c.image = in.image().image();
  if (c.image.empty()) return absl::InvalidArgumentError("config.image.image is required");
  c.command.assign(in.command().begin(), in.command().end());
  c.args.assign(in.args().begin(), in.args().end());
  c.working_dir = in.working_dir();
  for (const runtime::v1::KeyValue& kv : in.envs()) c.envs.emplace_back(kv.key(), kv.value());
  for (const runtime::v1::Mount& m : in.mounts()) {
    ContainerMount cm;
    cm.container_path = m.container_path();
    cm.host_path = m.host_path();
    cm.readonly = m.readonly();
    switch (m.propagation()) {
      case runtime::v1::PROPAGATION_PRIVATE:
        cm.propagation = MountPropagation::kPrivate;
        break;
      case runtime::v1::PROPAGATION_HOST_TO_CONTAINER:
        cm.propagation = MountPropagation::kHostToContainer;
        break;
      case runtime::v1::PROPAGATION_BIDIRECTIONAL:
        // Only the host handler can honour it; CreateContainer refuses it for VM pods.
        cm.propagation = MountPropagation::kBidirectional;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("mount of ", m.host_path(), ": unknown propagation"));
    }
    cm.selinux_relabel = m.selinux_relabel();
    cm.recursive_read_only = m.recursive_read_only();
    if (m.has_image() && !m.image().image().empty()) {
      // An image volume: the image's layers, read-only, at container_path.
      cm.image = m.image().image();
      cm.image_sub_path = m.image_sub_path();
      if (!m.host_path().empty()) {
        return absl::InvalidArgumentError(absl::StrCat("mount at ", m.container_path(),
                                                       ": both host_path (", m.host_path(),
                                                       ") and image (", cm.image, ") are set"));
      }
      if (cm.propagation == MountPropagation::kBidirectional) {
        return absl::InvalidArgumentError(absl::StrCat(
            "mount of image ", cm.image, " at ", m.container_path(),
            ": an image volume is read-only and cannot have Bidirectional propagation"));
      }
      if (agent::Error e = agent::ValidateImageSubPath(cm.image_sub_path); !e.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("mount of image ", cm.image, " at ",
                                                       m.container_path(), ": ", e.message()));
      }
      // Read-only whatever the request says (kubelet asks for it so): an image is immutable.
      cm.readonly = true;
    } else if (!m.image_sub_path().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("mount at ", m.container_path(),
                                                     ": image_sub_path is set without an image"));
    }
    if (cm.recursive_read_only && !cm.readonly) {
      // As the CRI says: recursive_read_only must not be set without readonly.
      return absl::InvalidArgumentError(absl::StrCat(
          "mount of ", m.host_path(), " at ", m.container_path(),
          ": recursive_read_only is set but readonly is not (it must be read-only to be "
          "recursively read-only)"));
    }
    if (cm.recursive_read_only && cm.propagation != MountPropagation::kPrivate) {
      // A mount propagated in later would not be read-only: refuse rather than half-honour it.
      return absl::InvalidArgumentError(absl::StrCat(
          "mount of ", m.host_path(), " at ", m.container_path(),
          ": recursive_read_only needs private mount propagation (mounts propagated in later "
          "would not be read-only)"));
    }
    c.mounts.push_back(cm);
  }
  if (in.devices_size() > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device ", in.devices(0).host_path(), ": host devices cannot be passed into a pod VM"));
  }
  c.labels.insert(in.labels().begin(), in.labels().end());
  c.annotations.insert(in.annotations().begin(), in.annotations().end());
  c.log_path = in.log_path();
  if (HasDotDot(c.log_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.log_path \"", c.log_path,
                     "\" has a \"..\" component (log paths stay below the "
                     "pod's log_directory)"));
  }
  c.stdin = in.stdin();
  c.stdin_once = in.stdin_once();
  c.tty = in.tty();
  c.stop_signal = SignalNumber(in.stop_signal());
  if (in.has_linux()) {
    c.resources = FromProto(in.linux().resources());
    const runtime::v1::LinuxContainerSecurityContext& sc = in.linux().security_context();
    c.privileged = sc.privileged();
    c.readonly_rootfs = sc.readonly_rootfs();
    c.no_new_privs = sc.no_new_privs();
    c.cap_add.assign(sc.capabilities().add_capabilities().begin(),
                     sc.capabilities().add_capabilities().end());
    c.cap_drop.assign(sc.capabilities().drop_capabilities().begin(),
                      sc.capabilities().drop_capabilities().end());
    c.masked_paths.assign(sc.masked_paths().begin(), sc.masked_paths().end());
    c.readonly_paths.assign(sc.readonly_paths().begin(), sc.readonly_paths().end());
    if (sc.has_run_as_user()) c.run_as_user = sc.run_as_user().value();
    if (sc.has_run_as_group()) c.run_as_group = sc.run_as_group().value();
    c.run_as_username = sc.run_as_username();
    c.supplemental_groups.assign(sc.supplemental_groups().begin(), sc.supplemental_groups().end());
    switch (sc.supplemental_groups_policy()) {
      case runtime::v1::Merge:
        c.supplemental_groups_policy = SupplementalGroupsPolicy::kMerge;
        break;
      case runtime::v1::Strict:
        c.supplemental_groups_policy = SupplementalGroupsPolicy::kStrict;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("config.linux.security_context.supplemental_groups_policy: unknown value ",
                         static_cast<int>(sc.supplemental_groups_policy()), " (Merge or Strict)"));
    }
    switch (sc.namespace_options().pid()) {
      case runtime::v1::POD:
      case runtime::v1::TARGET:
        c.share_pod_pid = true;
        break;
      case runtime::v1::CONTAINER:
        c.share_pod_pid = false;
        break;
      case runtime::v1::NODE:
        c.node_pid = true;  // CreateContainer refuses it unless the pod runs on the host
        break;
      default:
        return absl::InvalidArgumentError("namespace_options.pid: unknown mode");
    }
    absl::StatusOr<std::optional<PodUserNamespace>> userns =
        UserNamespaceFromProto(sc.namespace_options());
    if (!userns.ok()) return userns.status();
    c.userns_given = sc.namespace_options().has_userns_options();
    c.user_namespace = *userns;
    // seccomp: the SecurityProfile when set (its zero value is RuntimeDefault), else the
    // deprecated profile path, else unconfined (as kubelet means by leaving both out).
    if (sc.has_seccomp()) {
      switch (sc.seccomp().profile_type()) {
        case runtime::v1::SecurityProfile::RuntimeDefault:
          c.seccomp.kind = SeccompConfig::Kind::kRuntimeDefault;
          break;
        case runtime::v1::SecurityProfile::Unconfined:
          c.seccomp.kind = SeccompConfig::Kind::kUnconfined;
          break;
        case runtime::v1::SecurityProfile::Localhost:
          c.seccomp.kind = SeccompConfig::Kind::kLocalhost;
          c.seccomp.localhost_path = sc.seccomp().localhost_ref();
          break;
        default:
          return absl::InvalidArgumentError("seccomp: unknown profile type");
      }
    } else if (const std::string p = LegacySeccompProfilePath(sc); !p.empty()) {
      if (p == "runtime/default" || p == "docker/default") {
        c.seccomp.kind = SeccompConfig::Kind::kRuntimeDefault;
      } else if (p == "unconfined") {
        c.seccomp.kind = SeccompConfig::Kind::kUnconfined;
      } else if (p.rfind("localhost/", 0) == 0) {
        c.seccomp.kind = SeccompConfig::Kind::kLocalhost;
        c.seccomp.localhost_path = p.substr(sizeof("localhost/") - 1);
      } else {
        return absl::InvalidArgumentError(absl::StrCat("seccomp_profile_path '", p,
                                                       "' is not runtime/default, unconfined or "
                                                       "localhost/<path>"));
      }
    }
    if ((c.run_as_user && *c.run_as_user < 0) || (c.run_as_group && *c.run_as_group < 0)) {
      return absl::InvalidArgumentError("run_as_user and run_as_group must not be negative");
    }
  }
  return c;
}

ContainerFilter FromProto(const runtime::v1::ContainerFilter& in) {
  ContainerFilter f;
  f.id_prefix = in.id();
  if (in.has_state()) {
    switch (in.state().state()) {
      case runtime::v1::CONTAINER_CREATED:
        f.state = ContainerState::kCreated;
        break;
      case runtime::v1::CONTAINER_RUNNING:
        f.state = ContainerState::kRunning;
        break;
      case runtime::v1::CONTAINER_EXITED:
        f.state = ContainerState::kExited;
        break;
      default:
        f.state = ContainerState::kUnknown;
    }
  }
  f.sandbox_id_prefix = in.pod_sandbox_id();
  f.label_selector.insert(in.label_selector().begin(), in.label_selector().end());
  return f;
}

ContainerFilter FromProto(const runtime::v1::ContainerStatsFilter& in) {
  ContainerFilter f;
  f.id_prefix = in.id();
  f.sandbox_id_prefix = in.pod_sandbox_id();
  f.label_selector.insert(in.label_selector().begin(), in.label_selector().end());
  return f;
}

void ToProto(const Container& c, runtime::v1::Container* out) {
  out->set_id(c.metadata.id);
  out->set_pod_sandbox_id(c.metadata.sandbox_id);
  Metadata(c, out->mutable_metadata());
  Image(c, out->mutable_image());
  out->set_image_ref(c.metadata.image_ref);
  out->set_image_id(c.metadata.image_id);
  out->set_state(ToProto(c.status.state));
  out->set_created_at(c.metadata.created_at_ns);
  out->mutable_labels()->insert(c.metadata.config.labels.begin(), c.metadata.config.labels.end());
  out->mutable_annotations()->insert(c.metadata.config.annotations.begin(),
                                     c.metadata.config.annotations.end());
}

void ToProto(const Container& c, runtime::v1::ContainerStatus* out) {
  out->set_id(c.metadata.id);
  Metadata(c, out->mutable_metadata());
  out->set_state(ToProto(c.status.state));
  out->set_created_at(c.metadata.created_at_ns);
  out->set_started_at(c.status.started_at_ns);
  out->set_finished_at(c.status.finished_at_ns);
  out->set_exit_code(c.status.exit_code);
  Image(c, out->mutable_image());
  out->set_image_ref(c.metadata.image_ref);
  out->set_image_id(c.metadata.image_id);
  out->set_reason(c.status.reason);
  out->set_message(c.status.message);
  out->mutable_labels()->insert(c.metadata.config.labels.begin(), c.metadata.config.labels.end());
  out->mutable_annotations()->insert(c.metadata.config.annotations.begin(),
                                     c.metadata.config.annotations.end());
  for (const ContainerMount& m : c.metadata.config.mounts) {
    runtime::v1::Mount* pm = out->add_mounts();
    pm->set_container_path(m.container_path);
    pm->set_host_path(m.host_path);
    pm->set_readonly(m.readonly);
    pm->set_recursive_read_only(m.recursive_read_only);
    pm->set_selinux_relabel(m.selinux_relabel);
    switch (m.propagation) {
      case MountPropagation::kPrivate:
        pm->set_propagation(runtime::v1::PROPAGATION_PRIVATE);
        break;
      case MountPropagation::kHostToContainer:
        pm->set_propagation(runtime::v1::PROPAGATION_HOST_TO_CONTAINER);
        break;
      case MountPropagation::kBidirectional:
        pm->set_propagation(runtime::v1::PROPAGATION_BIDIRECTIONAL);
        break;
    }
    if (!m.image.empty()) {
      pm->mutable_image()->set_image(m.image);
      pm->set_image_sub_path(m.image_sub_path);
    }
  }
  out->set_log_path(c.metadata.log_path);
  out->set_stop_signal(ToProtoSignal(c.metadata.stop_signal));
  ToProto(c.status.resources, out->mutable_resources()->mutable_linux());
  // What the init process was given, as resolved at create; unknown (an old record or agent):
  // left out rather than guessed from the request.
  if (const std::optional<ContainerUser>& user = c.metadata.resolved_user) {
    runtime::v1::LinuxContainerUser* u = out->mutable_user()->mutable_linux();
    u->set_uid(user->uid);
    u->set_gid(user->gid);
    for (uint32_t g : user->supplemental_groups) u->add_supplemental_groups(g);
  }
}

void ToProto(const ContainerStatsInfo& info, runtime::v1::ContainerStats* out) {
  const Container& c = info.container;
  runtime::v1::ContainerAttributes* a = out->mutable_attributes();
  a->set_id(c.metadata.id);
  Metadata(c, a->mutable_metadata());
  a->mutable_labels()->insert(c.metadata.config.labels.begin(), c.metadata.config.labels.end());
  a->mutable_annotations()->insert(c.metadata.config.annotations.begin(),
                                   c.metadata.config.annotations.end());
  // No figures (not running, or the guest did not answer in time): attributes only, as
  // containerd reports a container without metrics; zeros would read as an idle container.
  if (!info.measured) return;
  const GuestContainerStats& s = info.stats;
  out->mutable_cpu()->set_timestamp(s.timestamp_ns);
  out->mutable_cpu()->mutable_usage_core_nano_seconds()->set_value(s.cpu_usage_ns);
  out->mutable_memory()->set_timestamp(s.timestamp_ns);
  out->mutable_memory()->mutable_working_set_bytes()->set_value(s.memory_working_set_bytes);
  out->mutable_memory()->mutable_usage_bytes()->set_value(s.memory_usage_bytes);
  out->mutable_memory()->mutable_rss_bytes()->set_value(s.memory_rss_bytes);
  out->mutable_memory()->mutable_page_faults()->set_value(s.page_faults);
  out->mutable_memory()->mutable_major_page_faults()->set_value(s.major_page_faults);
  out->mutable_writable_layer()->set_timestamp(s.timestamp_ns);
  out->mutable_writable_layer()->mutable_fs_id()->set_mountpoint("/");
  out->mutable_writable_layer()->mutable_used_bytes()->set_value(s.rootfs_used_bytes);
}

std::string VerboseInfo(const Container& c) {
  nlohmann::json j;
  j["id"] = c.metadata.id;
  j["sandboxID"] = c.metadata.sandbox_id;
  j["name"] = c.metadata.name;
  j["pid"] = c.status.pid;
  j["imageID"] = c.metadata.image_id;
  j["layers"] = c.metadata.layers;
  j["config"] = c.metadata.config;
  j["runtimeSpec"] = {{"env", c.metadata.env}, {"cwd", c.metadata.cwd}};
  return j.dump();
}

}  // namespace podvisor::cri
