#include "pod-sandbox/agent_wire.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace podvisor {
namespace {

namespace v1 = agent::v1;

constexpr size_t kMaxMessageBytes = 64 * 1024;  // status messages
constexpr int kMaxStepTimings = 32;             // Response.timings
constexpr size_t kMaxStepName = 64;
constexpr size_t kMaxShortString = 256;  // versions, kernel release, features
constexpr int kMaxFeatures = 64;
constexpr int kMaxStatsEntries = 4096;
constexpr size_t kMaxPath = 4096;
// What an agent's Inspect may list (agent/inspect.h bounds it the same).
constexpr int kMaxInspectProcesses = 2048;
constexpr int kMaxInspectMounts = 1024;
constexpr int kMaxInspectDisks = 256;
// NGROUPS_MAX: no process holds more supplementary groups (agent/oci_spec.h bounds them too).
constexpr int kMaxSupplementaryGroups = 65536;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("invalid frame from the guest: ", what));
}

bool IsPrintable(absl::string_view s, size_t max_len) {
  if (s.size() > max_len) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool IsValidOptionalId(absl::string_view id) { return id.empty() || IsValidAgentId(id); }

absl::Status ValidateExit(const v1::ExitStatus& s) {
  if (s.signal() < 0 || s.signal() > 64) return Bad("signal out of range");
  if (s.exit_code() < 0 || s.exit_code() > 255 + 128) return Bad("exit code out of range");
  if (s.finished_at_ns() > static_cast<uint64_t>(INT64_MAX) ||
      s.started_at_ns() > static_cast<uint64_t>(INT64_MAX)) {
    return Bad("time out of range");
  }
  return absl::OkStatus();
}

absl::Status ValidateInspect(const v1::InspectResponse& r) {
  if (r.processes_size() > kMaxInspectProcesses || r.mounts_size() > kMaxInspectMounts ||
      r.disks_size() > kMaxInspectDisks) {
    return Bad("inspect lists too long");
  }
  for (const v1::GuestProcess& p : r.processes()) {
    if (!IsPrintable(p.command(), kMaxShortString) || !IsPrintable(p.state(), 8) ||
        !IsValidOptionalId(p.container_id()) || p.rss_bytes() > static_cast<uint64_t>(INT64_MAX)) {
      return Bad("inspect process");
    }
  }
  for (const v1::GuestMount& m : r.mounts()) {
    if (!IsPrintable(m.source(), kMaxPath) || !IsPrintable(m.target(), kMaxPath) ||
        !IsPrintable(m.fs_type(), kMaxShortString) || !IsPrintable(m.options(), kMaxPath)) {
      return Bad("inspect mount");
    }
  }
  for (const v1::GuestDisk& d : r.disks()) {
    if (!IsPrintable(d.name(), kMaxShortString) || !IsPrintable(d.serial(), kMaxShortString) ||
        !IsPrintable(d.mount_point(), kMaxPath) ||
        d.size_bytes() > static_cast<uint64_t>(INT64_MAX)) {
      return Bad("inspect disk");
    }
  }
  return absl::OkStatus();
}

// Response.container_user: the shape every resolved user has (what it must match is the
// request's, checked by ToContainerUser).
absl::Status ValidateContainerUser(const v1::User& u) {
  if (!u.has_uid()) return Bad("container user without a uid");
  if (u.additional_gids_size() > kMaxSupplementaryGroups) return Bad("container user groups");
  for (int i = 1; i < u.additional_gids_size(); ++i) {
    if (u.additional_gids(i - 1) >= u.additional_gids(i)) {
      return Bad("container user groups not ascending");
    }
  }
  const auto& g = u.additional_gids();
  if (!std::binary_search(g.begin(), g.end(), u.gid())) {
    return Bad("container user groups without the primary gid");
  }
  if (!IsPrintable(u.username(), kMaxShortString)) return Bad("container user name");
  return absl::OkStatus();
}

absl::Status ValidateResponse(const v1::Response& r) {
  const int code = static_cast<int>(r.status().code());
  if (code < 0 || code > 16) return Bad("unknown status code");
  if (r.status().message().size() > kMaxMessageBytes) return Bad("status message too long");
  if (r.timings_size() > kMaxStepTimings) return Bad("too many step timings");
  for (const v1::StepTiming& t : r.timings()) {
    if (t.step().empty() || !IsPrintable(t.step(), kMaxStepName)) return Bad("step timing name");
  }
  if (code != 0) {
    if (r.result_case() != v1::Response::RESULT_NOT_SET || r.has_container_user()) {
      return Bad("failed call with a result");
    }
    return absl::OkStatus();
  }
  if (r.has_container_user()) {
    if (r.result_case() != v1::Response::kEmpty) return Bad("container user on another result");
    if (absl::Status s = ValidateContainerUser(r.container_user()); !s.ok()) return s;
  }
  switch (r.result_case()) {
    case v1::Response::RESULT_NOT_SET:
      return Bad("successful response without a result");
    case v1::Response::kHello: {
      const v1::HelloResponse& h = r.hello();
      if (!IsPrintable(h.agent_version(), kMaxShortString) ||
          !IsPrintable(h.kernel_release(), kMaxShortString)) {
        return Bad("hello strings");
      }
      if (h.features_size() > kMaxFeatures) return Bad("too many features");
      for (const std::string& f : h.features()) {
        if (f.empty() || !IsPrintable(f, kMaxShortString)) return Bad("feature name");
      }
      if (h.boot_time_ns() > static_cast<uint64_t>(INT64_MAX) ||
          h.uptime_ns() > static_cast<uint64_t>(INT64_MAX)) {
        return Bad("hello times");
      }
      return absl::OkStatus();
    }
    case v1::Response::kExitStatus:
      return ValidateExit(r.exit_status());
    case v1::Response::kStats: {
      if (r.stats().containers_size() > kMaxStatsEntries) return Bad("too many stats entries");
      for (const v1::ContainerStats& c : r.stats().containers()) {
        if (!IsValidAgentId(c.container_id())) return Bad("stats container id");
        if (c.timestamp_ns() > static_cast<uint64_t>(INT64_MAX)) return Bad("stats time");
      }
      return absl::OkStatus();
    }
    case v1::Response::kDiskAttached: {
      const std::string& d = r.disk_attached().device();
      if (d.rfind("/dev/", 0) != 0 || !IsPrintable(d, kMaxShortString) ||
          d.find("..") != std::string::npos) {
        return Bad("disk device path");
      }
      return absl::OkStatus();
    }
    case v1::Response::kAttachOutput:
      if (r.attach_output().stdout_offset() > static_cast<uint64_t>(INT64_MAX) ||
          r.attach_output().stderr_offset() > static_cast<uint64_t>(INT64_MAX)) {
        return Bad("output offsets");
      }
      return absl::OkStatus();
    case v1::Response::kInspect:
      return ValidateInspect(r.inspect());
    case v1::Response::kContainers: {
      if (r.containers().containers_size() > kMaxStatsEntries) return Bad("too many containers");
      for (const v1::ListContainersResponse::Entry& e : r.containers().containers()) {
        if (!IsValidAgentId(e.id())) return Bad("listed container id");
        if (e.pid() > static_cast<uint32_t>(INT32_MAX)) return Bad("listed container pid");
      }
      return absl::OkStatus();
    }
    case v1::Response::kPing:
    case v1::Response::kEmpty:
    case v1::Response::kProcessStarted:
      return absl::OkStatus();
  }
  return Bad("unknown result");
}

}  // namespace

bool IsValidAgentId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return id != "." && id != "..";
}

absl::Status ValidateGuestFrame(const v1::Frame& frame) {
  switch (frame.body_case()) {
    case v1::Frame::kResponse:
      if (frame.id() == 0) return Bad("response without a request id");
      return ValidateResponse(frame.response());
    case v1::Frame::kStream:
      if (frame.id() != 0) return Bad("stream data with a request id");
      if (frame.stream().stream_id() == 0) return Bad("stream id 0");
      if (frame.stream().data().size() > kAgentMaxStreamChunk) return Bad("stream chunk too big");
      return absl::OkStatus();
    case v1::Frame::kEvent: {
      if (frame.id() != 0) return Bad("event with a request id");
      const v1::Event& e = frame.event();
      switch (e.kind_case()) {
        case v1::Event::kProcessExited:
          if (!IsValidAgentId(e.process_exited().container_id()) ||
              !IsValidOptionalId(e.process_exited().exec_id())) {
            return Bad("event ids");
          }
          return ValidateExit(e.process_exited().status());
        case v1::Event::kOom:
          if (!IsValidAgentId(e.oom().container_id())) return Bad("event ids");
          return absl::OkStatus();
        case v1::Event::KIND_NOT_SET:
          break;
      }
      return Bad("event of unknown kind");
    }
    case v1::Frame::kRequest:
      return Bad("the guest may not send requests");
    case v1::Frame::BODY_NOT_SET:
      break;
  }
  return Bad("empty frame");
}

absl::StatusOr<v1::Frame> ParseGuestFrame(const std::string& payload) {
  v1::Frame frame;
  if (!frame.ParseFromString(payload)) return Bad("not a Frame message");
  if (absl::Status s = ValidateGuestFrame(frame); !s.ok()) return s;
  return frame;
}

absl::Status FromWireStatus(const v1::Status& status) {
  if (status.code() == v1::OK) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.code()),
                      absl::StrCat("agent: ", status.message()));
}

AgentInfo ToAgentInfo(const v1::HelloResponse& h) {
  AgentInfo info;
  info.protocol_version = static_cast<int>(h.version());
  info.agent_version = h.agent_version();
  info.kernel_release = h.kernel_release();
  info.boot_time_ns = static_cast<int64_t>(h.boot_time_ns());
  info.uptime_ns = static_cast<int64_t>(h.uptime_ns());
  info.features.assign(h.features().begin(), h.features().end());
  info.pid = h.pid();
  return info;
}

ExitInfo ToExitInfo(const v1::ExitStatus& s) {
  ExitInfo e;
  e.exit_code = s.exit_code();
  e.signal = s.signal();
  e.oom_killed = s.oom_killed();
  e.started_at_ns = static_cast<int64_t>(s.started_at_ns());
  e.finished_at_ns = static_cast<int64_t>(s.finished_at_ns());
  return e;
}

AgentEvent ToAgentEvent(const v1::Event& event) {
  AgentEvent e;
  if (event.kind_case() == v1::Event::kOom) {
    e.kind = AgentEvent::Kind::kOom;
    e.container_id = event.oom().container_id();
    return e;
  }
  e.kind = AgentEvent::Kind::kProcessExited;
  e.container_id = event.process_exited().container_id();
  e.exec_id = event.process_exited().exec_id();
  e.exit = ToExitInfo(event.process_exited().status());
  return e;
}

std::vector<GuestContainerStats> ToContainerStats(const v1::StatsResponse& stats) {
  std::vector<GuestContainerStats> out;
  for (const v1::ContainerStats& c : stats.containers()) {
    GuestContainerStats s;
    s.container_id = c.container_id();
    s.timestamp_ns = static_cast<int64_t>(c.timestamp_ns());
    s.cpu_usage_ns = c.cpu_usage_ns();
    s.memory_working_set_bytes = c.memory_working_set_bytes();
    s.memory_usage_bytes = c.memory_usage_bytes();
    s.rootfs_used_bytes = c.rootfs_used_bytes();
    s.memory_rss_bytes = c.memory_rss_bytes();
    s.page_faults = c.page_faults();
    s.major_page_faults = c.major_page_faults();
    s.pids = c.pids();
    out.push_back(s);
  }
  return out;
}

GuestInspection ToInspection(const v1::InspectResponse& inspect) {
  GuestInspection out;
  for (const v1::GuestProcess& p : inspect.processes()) {
    out.processes.push_back(
        {p.pid(), p.ppid(), p.command(), p.container_id(), p.rss_bytes(), p.state(), p.uid()});
  }
  for (const v1::GuestMount& m : inspect.mounts()) {
    out.mounts.push_back({m.source(), m.target(), m.fs_type(), m.options()});
  }
  for (const v1::GuestDisk& d : inspect.disks()) {
    out.disks.push_back({d.name(), d.serial(), d.size_bytes(), d.read_only(), d.mount_point()});
  }
  out.truncated = inspect.truncated();
  return out;
}

GuestSandboxStats ToSandboxStats(const v1::StatsResponse& stats) {
  GuestSandboxStats out;
  out.containers = ToContainerStats(stats);
  out.memory_total_bytes = stats.guest_memory_total_bytes();
  out.memory_available_bytes = stats.guest_memory_available_bytes();
  out.memory_used_bytes = stats.guest_memory_used_bytes();
  out.cpu_usage_ns = stats.guest_cpu_usage_ns();
  out.process_count = stats.guest_process_count();
  return out;
}

absl::StatusOr<ContainerUser> ToContainerUser(const v1::User& resolved, const v1::User& asked) {
  if (absl::Status s = ValidateContainerUser(resolved); !s.ok()) return s;
  auto mismatch = [](absl::string_view what) {
    return absl::InternalError(
        absl::StrCat("the agent gave the container a user unlike the one asked for: ", what));
  };
  if (asked.has_uid() && resolved.uid() != asked.uid()) {
    return mismatch(absl::StrCat("uid ", resolved.uid(), ", asked ", asked.uid()));
  }
  if (!asked.gid_from_passwd() && resolved.gid() != asked.gid()) {
    return mismatch(absl::StrCat("gid ", resolved.gid(), ", asked ", asked.gid()));
  }
  const auto& groups = resolved.additional_gids();
  for (uint32_t g : asked.additional_gids()) {
    if (!std::binary_search(groups.begin(), groups.end(), g)) {
      return mismatch(absl::StrCat("group ", g, " is missing"));
    }
  }
  if (asked.strict_supplemental_groups()) {
    const auto& wanted = asked.additional_gids();
    for (uint32_t g : groups) {
      if (g != resolved.gid() && std::find(wanted.begin(), wanted.end(), g) == wanted.end()) {
        return mismatch(absl::StrCat("group ", g, " was not asked for (Strict)"));
      }
    }
  }
  ContainerUser out;
  out.uid = resolved.uid();
  out.gid = resolved.gid();
  out.supplemental_groups.assign(groups.begin(), groups.end());
  return out;
}

void ToWireProcess(const ProcessSpec& p, agent::v1::Process* out) {
  for (const auto& a : p.args) out->add_args(a);
  for (const auto& e : p.env) out->add_env(e);
  out->set_cwd(p.cwd);
  agent::v1::User* u = out->mutable_user();
  if (p.user.uid) {
    u->set_uid(*p.user.uid);
    u->set_has_uid(true);
  }
  u->set_gid(p.user.gid);
  u->set_gid_from_passwd(p.user.gid_from_passwd);
  for (uint32_t g : p.user.additional_gids) u->add_additional_gids(g);
  u->set_username(p.user.username);
  u->set_strict_supplemental_groups(p.user.strict_groups);
  out->set_terminal(p.terminal);
  out->set_stdin_stream(p.stdin_stream);
  out->set_stdout_stream(p.stdout_stream);
  out->set_stderr_stream(p.stderr_stream);
  out->set_no_new_privileges(p.no_new_privileges);
  out->set_acked_output(p.acked_output);
  out->set_output_window(p.output_window);
  agent::v1::Capabilities* caps = out->mutable_capabilities();
  for (const auto& c : p.capabilities) {
    caps->add_bounding(c);
    caps->add_effective(c);
    caps->add_permitted(c);
  }
}

void ToWireResources(const ContainerResources& in, agent::v1::LinuxResources* r) {
  r->set_cpu_shares(in.cpu_shares);
  r->set_cpu_quota(in.cpu_quota);
  r->set_cpu_period(in.cpu_period);
  r->set_cpuset_cpus(in.cpuset_cpus);
  r->set_cpuset_mems(in.cpuset_mems);
  r->set_memory_limit_bytes(in.memory_limit_bytes);
  r->set_memory_swap_limit_bytes(in.memory_swap_limit_bytes);
  r->set_pids_limit(in.pids_limit);
  for (const auto& [size, limit] : in.hugepage_limits)
    (*r->mutable_hugepage_limits())[size] = limit;
  for (const auto& [key, value] : in.unified) (*r->mutable_unified())[key] = value;
}

void ToWireContainerSpec(const ContainerSpec& s, agent::v1::ContainerSpec* out) {
  ToWireProcess(s.process, out->mutable_process());
  agent::v1::Rootfs* root = out->mutable_rootfs();
  if (!s.rootfs_disk_serial.empty()) {
    root->mutable_block_device()->set_serial(s.rootfs_disk_serial);
    root->mutable_block_device()->set_fs_type(s.rootfs_fs_type);
    root->mutable_block_device()->set_overlay(s.rootfs_overlay);
    for (const auto& o : s.rootfs_options) root->mutable_block_device()->add_options(o);
  } else if (s.rootfs_mount) {
    agent::v1::Mount* rm = root->mutable_mount();
    rm->set_destination("/");
    rm->set_type(s.rootfs_mount->type);
    rm->set_source(s.rootfs_mount->source);
    for (const auto& o : s.rootfs_mount->options) rm->add_options(o);
  } else {
    root->set_path(s.rootfs_path);
  }
  root->set_readonly(s.readonly_rootfs);
  for (const GuestMount& m : s.mounts) {
    agent::v1::Mount* pm = out->add_mounts();
    pm->set_destination(m.destination);
    pm->set_type(m.type);
    pm->set_source(m.source);
    for (const auto& o : m.options) pm->add_options(o);
  }
  for (const GuestImageVolume& v : s.image_volumes) {
    agent::v1::ImageVolume* pv = out->add_image_volumes();
    for (const std::string& l : v.lower_dirs) pv->add_lower_dirs(l);
    pv->set_sub_path(v.sub_path);
  }
  out->set_hostname(s.hostname);
  for (const auto& p : s.masked_paths) out->add_masked_paths(p);
  for (const auto& p : s.readonly_paths) out->add_readonly_paths(p);
  if (!s.seccomp_oci_json.empty()) out->mutable_seccomp()->set_oci_json(s.seccomp_oci_json);
  for (const auto& [k, v] : s.sysctls) (*out->mutable_sysctls())[k] = v;
  ToWireResources(s.resources, out->mutable_resources());
  if (s.resources.oom_score_adj) {
    out->mutable_process()->set_oom_score_adj(*s.resources.oom_score_adj);
  }
  out->set_privileged(s.privileged);
  out->set_share_pid_namespace(s.share_pid_namespace);
  if (s.user_namespace) {
    agent::v1::UserNamespace* u = out->mutable_user_namespace();
    for (const auto& [from, to] : {std::pair{&s.user_namespace->uids, u->mutable_uids()},
                                   std::pair{&s.user_namespace->gids, u->mutable_gids()}}) {
      to->set_container_id(from->container_id);
      to->set_host_id(from->host_id);
      to->set_length(from->length);
    }
  }
}

}  // namespace podvisor
