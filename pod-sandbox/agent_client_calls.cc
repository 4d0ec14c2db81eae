// AgentClient calls: each builds its request, makes the call on the channel and turns the response
// into domain types (see agent_client_impl.h).
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/agent_client_impl.h"
#include "pod-sandbox/agent_wire.h"

namespace podvisor::agent_client_internal {

absl::StatusOr<absl::Duration> AgentClientImpl::Ping(absl::Duration timeout) {
  v1::Request req;
  const uint64_t nonce = next_id_.load() ^ 0x5a5a5a5a;
  req.mutable_ping()->set_nonce(nonce);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return r.status();
  if (r->ping().nonce() != nonce) {
    Fail(absl::InvalidArgumentError("invalid frame from the guest: ping nonce mismatch"));
    return absl::UnavailableError("agent answered a ping with the wrong nonce");
  }
  return absl::Now() - start;
}

absl::Status AgentClientImpl::SetupSandbox(const SandboxSetup& s, absl::Duration timeout) {
  v1::Request req;
  v1::SetupSandboxRequest* p = req.mutable_setup_sandbox();
  p->set_hostname(s.hostname);
  if (s.dns) {
    v1::DnsConfig* d = p->mutable_dns();
    for (const auto& x : s.dns->servers) d->add_servers(x);
    for (const auto& x : s.dns->searches) d->add_searches(x);
    for (const auto& x : s.dns->options) d->add_options(x);
  }
  for (const HostEntry& h : s.hosts) {
    v1::HostEntry* e = p->add_hosts();
    e->set_ip(h.ip);
    for (const auto& n : h.names) e->add_names(n);
  }
  p->set_wall_time_ns(static_cast<uint64_t>(s.wall_time_ns));
  p->set_entropy(s.entropy);
  for (const auto& [k, v] : s.sysctls) (*p->mutable_sysctls())[k] = v;
  p->set_shared_fs_tag(s.shared_fs_tag);
  p->set_shared_fs_type(s.shared_fs_type);
  p->set_machine_id(s.machine_id);
  return CallStatus(req, timeout, "setup sandbox");
}

absl::Status AgentClientImpl::SetupNetwork(const NetworkSetup& s, absl::Duration timeout) {
  v1::Request req;
  v1::SetupNetworkRequest* p = req.mutable_setup_network();
  for (const GuestInterface& i : s.interfaces) {
    v1::NetworkInterface* n = p->add_interfaces();
    n->set_mac(i.mac);
    n->set_set_mac(i.set_mac);
    n->set_name(i.name);
    n->set_mtu(i.mtu);
    n->set_up(i.up);
    for (const auto& a : i.addresses) n->add_addresses()->set_cidr(a);
  }
  for (const GuestRoute& r : s.routes) {
    v1::Route* pr = p->add_routes();
    pr->set_destination(r.destination);
    pr->set_gateway(r.gateway);
    pr->set_device(r.device);
    pr->set_metric(r.metric);
  }
  p->set_loopback_up(s.loopback_up);
  return CallStatus(req, timeout, "setup network");
}

absl::Status AgentClientImpl::Shutdown(bool reboot, absl::Duration grace, absl::Duration timeout) {
  v1::Request req;
  req.mutable_shutdown()->set_reboot(reboot);
  req.mutable_shutdown()->set_grace_period_ms(
      static_cast<uint32_t>(absl::ToInt64Milliseconds(grace)));
  return CallStatus(req, timeout, "shutdown");
}

absl::StatusOr<std::optional<ContainerUser>> AgentClientImpl::CreateContainer(
    const std::string& id, const ContainerSpec& spec, absl::Duration timeout) {
  if (!IsValidAgentId(id)) return absl::InvalidArgumentError("invalid container id " + id);
  v1::Request req;
  req.mutable_create_container()->set_container_id(id);
  ToWireContainerSpec(spec, req.mutable_create_container()->mutable_spec());
  const std::string context = "create container " + id;
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), context);
  if (!r->has_container_user()) return std::nullopt;  // an agent older than the field
  absl::StatusOr<ContainerUser> user =
      ToContainerUser(r->container_user(), req.create_container().spec().process().user());
  if (!user.ok()) {
    // Created, but not as asked: it must not run.
    (void)RemoveContainer(id, true, timeout);
    return WithContext(user.status(), context);
  }
  return std::optional<ContainerUser>(*std::move(user));
}

absl::StatusOr<uint32_t> AgentClientImpl::StartContainer(const std::string& id,
                                                         absl::Duration timeout) {
  v1::Request req;
  req.mutable_start_container()->set_container_id(id);
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "start container " + id);
  return r->process_started().pid();
}

absl::Status AgentClientImpl::SignalProcess(const std::string& id, const std::string& exec_id,
                                            int signal, bool all, absl::Duration timeout) {
  v1::Request req;
  v1::SignalProcessRequest* p = req.mutable_signal_process();
  p->set_container_id(id);
  p->set_exec_id(exec_id);
  p->set_signal(signal);
  p->set_all(all);
  return CallStatus(req, timeout, "signal " + id);
}

absl::StatusOr<ExitInfo> AgentClientImpl::WaitProcess(const std::string& id,
                                                      const std::string& exec_id,
                                                      absl::Duration timeout) {
  v1::Request req;
  req.mutable_wait_process()->set_container_id(id);
  req.mutable_wait_process()->set_exec_id(exec_id);
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "wait " + id);
  return ToExitInfo(r->exit_status());
}

void AgentClientImpl::WaitProcessAsync(const std::string& id, const std::string& exec_id,
                                       absl::Duration timeout, ExitCallback done) {
  v1::Request req;
  req.mutable_wait_process()->set_container_id(id);
  req.mutable_wait_process()->set_exec_id(exec_id);
  CallAsync(req, timeout, [done = std::move(done), id](CallResult r) {
    if (!r.ok()) {
      done(WithContext(r.status(), "wait " + id));
    } else {
      done(ToExitInfo(r->exit_status()));
    }
  });
}

absl::Status AgentClientImpl::RemoveContainer(const std::string& id, bool force,
                                              absl::Duration timeout) {
  v1::Request req;
  req.mutable_remove_container()->set_container_id(id);
  req.mutable_remove_container()->set_force(force);
  return CallStatus(req, timeout, "remove container " + id);
}

absl::StatusOr<uint32_t> AgentClientImpl::ExecProcess(const std::string& id,
                                                      const std::string& exec_id,
                                                      const ProcessSpec& process,
                                                      absl::Duration timeout) {
  v1::Request req;
  v1::ExecProcessRequest* p = req.mutable_exec_process();
  p->set_container_id(id);
  p->set_exec_id(exec_id);
  ToWireProcess(process, p->mutable_process());
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "exec in " + id);
  return r->process_started().pid();
}

absl::Status AgentClientImpl::ResizeTty(const std::string& id, const std::string& exec_id,
                                        uint32_t rows, uint32_t cols, absl::Duration timeout) {
  v1::Request req;
  v1::ResizeTtyRequest* p = req.mutable_resize_tty();
  p->set_container_id(id);
  p->set_exec_id(exec_id);
  p->set_rows(rows);
  p->set_cols(cols);
  return CallStatus(req, timeout, "resize tty of " + id);
}

absl::StatusOr<std::vector<GuestContainerStats>> AgentClientImpl::Stats(
    const std::vector<std::string>& ids, absl::Duration timeout) {
  v1::Request req;
  for (const auto& id : ids) req.mutable_stats()->add_container_ids(id);
  req.mutable_stats();
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "stats");
  return ToContainerStats(r->stats());
}

absl::StatusOr<GuestSandboxStats> AgentClientImpl::SandboxStats(absl::Duration timeout) {
  v1::Request req;
  req.mutable_stats();
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "stats");
  return ToSandboxStats(r->stats());
}

absl::StatusOr<GuestInspection> AgentClientImpl::Inspect(absl::Duration timeout) {
  v1::Request req;
  req.mutable_inspect();
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "inspect");
  if (!r->has_inspect()) return absl::UnimplementedError("inspect: the agent is too old");
  return ToInspection(r->inspect());
}

absl::StatusOr<std::vector<GuestContainer>> AgentClientImpl::ListContainers(
    absl::Duration timeout) {
  v1::Request req;
  req.mutable_list_containers();
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "list containers");
  if (!r->has_containers()) {
    return absl::InternalError("list containers: the agent answered something else");
  }
  std::vector<GuestContainer> out;
  for (const v1::ListContainersResponse::Entry& e : r->containers().containers()) {
    GuestContainer c;
    c.id = e.id();
    c.pid = e.pid();
    switch (e.state()) {
      case v1::ListContainersResponse::RUNNING:
        c.state = GuestContainer::State::kRunning;
        break;
      case v1::ListContainersResponse::EXITED:
        c.state = GuestContainer::State::kExited;
        break;
      default:
        c.state = GuestContainer::State::kCreated;
    }
    out.push_back(std::move(c));
  }
  return out;
}

absl::Status AgentClientImpl::UpdateContainerResources(const std::string& id,
                                                       const ContainerResources& resources,
                                                       absl::Duration timeout) {
  v1::Request req;
  v1::UpdateContainerResourcesRequest* u = req.mutable_update_container_resources();
  u->set_container_id(id);
  ToWireResources(resources, u->mutable_resources());
  if (resources.oom_score_adj) {
    u->set_set_oom_score_adj(true);
    u->set_oom_score_adj(*resources.oom_score_adj);
  }
  return CallStatus(req, timeout, "update resources of " + id);
}

absl::Status AgentClientImpl::UpdatePodResources(const PodLimits& limits, absl::Duration timeout) {
  v1::Request req;
  v1::UpdatePodResourcesRequest* u = req.mutable_update_pod_resources();
  u->set_memory_limit_bytes(limits.memory_limit_bytes);
  u->set_cpu_quota(limits.cpu_quota);
  u->set_cpu_period(limits.cpu_period);
  return CallStatus(req, timeout, "update the pod's resources");
}

absl::Status AgentClientImpl::PortForward(uint32_t port, uint32_t stream_id, absl::Duration timeout,
                                          uint32_t window) {
  v1::Request req;
  req.mutable_port_forward()->set_port(port);
  req.mutable_port_forward()->set_stream_id(stream_id);
  req.mutable_port_forward()->set_window(window);
  return CallStatus(req, timeout, absl::StrCat("port forward to ", port));
}

absl::StatusOr<std::string> AgentClientImpl::DiskAttached(const std::string& serial,
                                                          const std::string& mount_point,
                                                          const std::string& fs_type, bool readonly,
                                                          absl::Duration timeout) {
  v1::Request req;
  v1::DiskAttachedRequest* p = req.mutable_disk_attached();
  p->set_serial(serial);
  p->set_mount_point(mount_point);
  p->set_fs_type(fs_type);
  p->set_readonly(readonly);
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "disk " + serial);
  return r->disk_attached().device();
}

absl::Status AgentClientImpl::DiskDetach(const std::string& serial, absl::Duration timeout) {
  v1::Request req;
  req.mutable_disk_detach()->set_serial(serial);
  return CallStatus(req, timeout, "detach disk " + serial);
}

uint32_t AgentClientImpl::AllocateStreamId() {
  uint32_t id = next_stream_.fetch_add(1);
  if (id == 0) id = next_stream_.fetch_add(1);
  return id;
}

absl::Status AgentClientImpl::WriteStream(uint32_t stream_id, absl::string_view data, bool eof) {
  do {
    const size_t n = std::min(data.size(), kAgentMaxStreamChunk);
    v1::Frame frame;
    frame.mutable_stream()->set_stream_id(stream_id);
    frame.mutable_stream()->set_data(std::string(data.substr(0, n)));
    data.remove_prefix(n);
    frame.mutable_stream()->set_eof(eof && data.empty());
    if (absl::Status s = Send(frame); !s.ok()) return s;
  } while (!data.empty());
  return absl::OkStatus();
}

absl::Status AgentClientImpl::AckStream(uint32_t stream_id, uint64_t offset) {
  v1::Frame frame;
  frame.mutable_stream()->set_stream_id(stream_id);
  frame.mutable_stream()->set_ack_offset(offset);
  return Send(frame);
}

absl::StatusOr<OutputAttached> AgentClientImpl::AttachOutput(const std::string& id,
                                                             const OutputAttach& attach,
                                                             absl::Duration timeout) {
  v1::Request req;
  v1::AttachOutputRequest* p = req.mutable_attach_output();
  p->set_container_id(id);
  p->set_stdout_stream(attach.stdout_stream);
  p->set_stderr_stream(attach.stderr_stream);
  p->set_stdin_stream(attach.stdin_stream);
  p->set_stdout_offset(attach.stdout_offset);
  p->set_stderr_offset(attach.stderr_offset);
  absl::StatusOr<v1::Response> r = Call(req, timeout);
  if (!r.ok()) return WithContext(r.status(), "attach output of " + id);
  OutputAttached out;
  out.stdout_offset = r->attach_output().stdout_offset();
  out.stderr_offset = r->attach_output().stderr_offset();
  out.exited = r->attach_output().exited();
  return out;
}

void AgentClientImpl::CloseStream(uint32_t stream_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    streams_.erase(stream_id);
  }
  v1::Request req;
  req.mutable_close_stream()->set_stream_id(stream_id);
  CallAsync(req, options_.call_timeout, [](CallResult) {});
}

}  // namespace podvisor::agent_client_internal
