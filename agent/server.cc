#include "agent/server.h"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "agent/containers.h"
#include "agent/disks.h"
#include "agent/init.h"
#include "agent/inspect.h"
#include "agent/log.h"
#include "agent/network_setup.h"
#include "agent/port_forward.h"
#include "agent/sandbox_setup.h"
#include "agent/step_timings.h"

namespace podvisor::agent {
namespace {

uint64_t NowNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

v1::Response OkEmpty() {
  v1::Response r;
  r.mutable_empty();
  return r;
}

v1::Response FromError(const Error& err) { return err.ok() ? OkEmpty() : ErrorResponse(err); }

}  // namespace

v1::Response ErrorResponse(const Error& error) {
  v1::Response r;
  r.mutable_status()->set_code(static_cast<v1::Code>(static_cast<int>(error.code())));
  r.mutable_status()->set_message(error.message());
  return r;
}

AgentServer::AgentServer(AgentOptions options, FrameChannel* channel)
    : options_(std::move(options)), channel_(channel) {
  containers_ = std::make_unique<ContainerManager>(options_, this);
}

AgentServer::~AgentServer() = default;

Error AgentServer::Serve() {
  std::string payload;
  for (;;) {
    Error err = channel_->ReadFrame(&payload);
    if (err.ok()) {
      HandleFrame(payload, std::chrono::steady_clock::now());
      continue;
    }
    if (channel_->kind() == ChannelKind::kSocket) return err;
    // The virtio port is the guest's only line to the host, and threads of this server (waits,
    // output pumps) live on: never give it up.
    if (err.code() == Code::kUnavailable) {
      // The host is not connected (yet, or any more): wait for it, and expect a new Hello.
      if (handshake_done_.exchange(false)) AgentLog(LogSeverity::kInfo, "host disconnected");
      usleep(50 * 1000);
      continue;
    }
    AgentLog(LogSeverity::kError, "channel: " + err.message() + "; resynchronising");
    handshake_done_ = false;
    channel_->Drain(200);
  }
}

void AgentServer::HandleFrame(const std::string& payload, StepClock::time_point received) {
  v1::Frame frame;
  if (!frame.ParseFromString(payload)) {
    AgentLog(LogSeverity::kWarning, "dropping an unparsable frame");
    return;
  }
  switch (frame.body_case()) {
    case v1::Frame::kRequest:
      HandleRequest(frame.id(), frame.request(), received);
      break;
    case v1::Frame::kStream:
      HandleStream(frame.stream());
      break;
    default:
      AgentLog(LogSeverity::kWarning, "dropping a frame the host should not send");
  }
}

void AgentServer::HandleRequest(uint64_t id, const v1::Request& request,
                                StepClock::time_point received) {
  if (id == 0) {
    AgentLog(LogSeverity::kWarning, "dropping a request without an id");
    return;
  }
  if (request.call_case() != v1::Request::kHello && !handshake_done_) {
    Respond(id, ErrorResponse(Error(Code::kFailedPrecondition, "handshake first (Hello)")));
    return;
  }
  switch (request.call_case()) {
    case v1::Request::kShutdown:
      Shutdown(id, request.shutdown());
      return;
    case v1::Request::kWaitProcess:
    case v1::Request::kCreateContainer:
    case v1::Request::kStartContainer:
    case v1::Request::kSignalProcess:
    case v1::Request::kRemoveContainer:
    case v1::Request::kExecProcess:
    case v1::Request::kSetupSandbox:
    case v1::Request::kSetupNetwork:
    case v1::Request::kStats:
    case v1::Request::kDiskAttached:
    case v1::Request::kDiskDetach:
    case v1::Request::kPortForward:
    case v1::Request::kUpdateContainerResources:
    case v1::Request::kUpdatePodResources:
    case v1::Request::kInspect:
      // May take long (a process to run, a mount, files to read in a starved guest): keep the
      // reader free for pings and stream data, or the host's liveness bound trips.
      std::thread([this, id, request, received] {
        Respond(id, TimedDispatch(request, &received));
      }).detach();
      return;
    default:
      Respond(id, TimedDispatch(request, nullptr));
  }
}

v1::Response AgentServer::TimedDispatch(const v1::Request& request,
                                        const StepClock::time_point* received) {
  ScopedStepTimings timings(received != nullptr ? *received : StepClock::now());
  // From the frame read to its own thread: a starved guest shows here.
  if (received != nullptr) MarkStep("hand-off to a thread");
  v1::Response r = Dispatch(request);
  timings.CopyTo(&r);
  return r;
}

v1::Response AgentServer::Dispatch(const v1::Request& request) {
  switch (request.call_case()) {
    case v1::Request::kHello:
      return Hello(request.hello());
    case v1::Request::kPing: {
      v1::Response r;
      r.mutable_ping()->set_nonce(request.ping().nonce());
      r.mutable_ping()->set_guest_time_ns(NowNs(CLOCK_REALTIME));
      return r;
    }
    case v1::Request::kSetupSandbox:
      return FromError(ApplySandboxSetup(options_, request.setup_sandbox()).With("setup sandbox"));
    case v1::Request::kSetupNetwork:
      return FromError(ApplyNetworkSetup(options_, request.setup_network()).With("setup network"));
    case v1::Request::kCreateContainer: {
      v1::User user;
      const Error e = containers_->Create(request.create_container(), &user);
      v1::Response r = FromError(e);
      if (e.ok()) *r.mutable_container_user() = std::move(user);
      return r;
    }
    case v1::Request::kStartContainer:
      return containers_->Start(request.start_container());
    case v1::Request::kSignalProcess:
      return FromError(containers_->Signal(request.signal_process()));
    case v1::Request::kWaitProcess:
      return containers_->Wait(request.wait_process());
    case v1::Request::kRemoveContainer:
      return FromError(containers_->Remove(request.remove_container()));
    case v1::Request::kExecProcess:
      return containers_->Exec(request.exec_process());
    case v1::Request::kResizeTty:
      return FromError(containers_->Resize(request.resize_tty()));
    case v1::Request::kStats:
      return containers_->Stats(request.stats());
    case v1::Request::kListContainers:
      return containers_->List();
    case v1::Request::kUpdateContainerResources:
      return FromError(containers_->UpdateResources(request.update_container_resources()));
    case v1::Request::kUpdatePodResources:
      return FromError(containers_->UpdatePodResources(request.update_pod_resources()));
    case v1::Request::kCloseStream:
      RemoveStreamHandler(request.close_stream().stream_id());
      RemoveAckHandler(request.close_stream().stream_id());
      return OkEmpty();
    case v1::Request::kAttachOutput:
      return containers_->AttachOutput(request.attach_output());
    case v1::Request::kDiskAttached:
      return DiskAttached(request.disk_attached());
    case v1::Request::kDiskDetach: {
      if (!options_.pid1) {
        return ErrorResponse(Error(Code::kFailedPrecondition, "no disks in --no-pid1 mode"));
      }
      std::string device;
      Error e = FindBlockDevice("/sys", request.disk_detach().serial(), 0, &device);
      if (e.code() == Code::kNotFound) return OkEmpty();  // already gone
      if (e.ok()) e = UnmountDevice(device);
      return FromError(e.With("detach disk " + request.disk_detach().serial()));
    }
    case v1::Request::kPortForward:
      return FromError(StartPortForward(this, request.port_forward()));
    case v1::Request::kInspect: {
      v1::Response r;
      *r.mutable_inspect() = InspectGuest("/proc", "/sys");
      return r;
    }
    default:
      return ErrorResponse(Error(Code::kUnimplemented, "unknown request"));
  }
}

v1::Response AgentServer::DiskAttached(const v1::DiskAttachedRequest& req) {
  if (!options_.pid1) {
    return ErrorResponse(Error(Code::kFailedPrecondition, "no disks in --no-pid1 mode"));
  }
  std::string device;
  Error e = FindBlockDevice("/sys", req.serial(), 10000, &device);
  MarkStep("wait for the disk");
  if (e.ok() && !req.mount_point().empty()) {
    if (req.mount_point()[0] != '/' || req.mount_point().find("..") != std::string::npos) {
      return ErrorResponse(Error(Code::kInvalidArgument, "bad mount point " + req.mount_point()));
    }
    mkdir(req.mount_point().c_str(), 0755);
    std::vector<std::string> opts(req.options().begin(), req.options().end());
    e = MountWithOptions(device, req.mount_point(), req.fs_type(), opts, req.readonly());
    MarkStep("mount");
  }
  if (!e.ok()) return ErrorResponse(e.With("disk " + req.serial()));
  v1::Response r;
  r.mutable_disk_attached()->set_device(device);
  return r;
}

v1::Response AgentServer::Hello(const v1::HelloRequest& req) {
  if (req.min_version() > v1::PROTOCOL_VERSION_1 || req.max_version() < v1::PROTOCOL_VERSION_1) {
    return ErrorResponse(
        Error(Code::kFailedPrecondition, "agent speaks protocol version 1 only; host asks for [" +
                                             std::to_string(req.min_version()) + ", " +
                                             std::to_string(req.max_version()) + "]"));
  }
  v1::Response r;
  v1::HelloResponse* h = r.mutable_hello();
  h->set_version(v1::PROTOCOL_VERSION_1);
  h->set_agent_version(options_.version);
  utsname u;
  if (uname(&u) == 0) h->set_kernel_release(u.release);
  const uint64_t uptime = NowNs(CLOCK_BOOTTIME);
  h->set_uptime_ns(uptime);
  h->set_boot_time_ns(NowNs(CLOCK_REALTIME) - uptime);
  h->set_pid(static_cast<uint32_t>(getpid()));
  h->add_features("sandbox");
  h->add_features("network");
  h->add_features("port-forward");
  h->add_features("disks");
  if (containers_->Available()) h->add_features("containers");
  h->add_features("attach-output");
  // Stream ids of a previous host (one that restarted) mean nothing to this one.
  containers_->HostChanged();
  std::map<uint32_t, AckHandler> acks;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    streams_.clear();
    acks.swap(ack_handlers_);
  }
  for (auto& [stream, handler] : acks) handler(kStreamGone);
  handshake_done_ = true;
  AgentLog(LogSeverity::kInfo, "handshake with host " + req.host_version());
  return r;
}

void AgentServer::Shutdown(uint64_t id, const v1::ShutdownRequest& req) {
  v1::ShutdownRequest copy = req;
  Respond(id, OkEmpty());
  std::thread([this, copy] {
    AgentLog(LogSeverity::kInfo, "shutdown requested");
    containers_->StopAll(copy.grace_period_ms());
    if (options_.pid1) PowerOff(copy.reboot());
    _exit(0);
  }).detach();
}

void AgentServer::HandleStream(const v1::StreamData& data) {
  if (data.ack_offset() != 0 && data.data().empty() && !data.eof()) {
    AckHandler ack;
    {
      std::lock_guard<std::mutex> lock(streams_mu_);
      auto it = ack_handlers_.find(data.stream_id());
      if (it != ack_handlers_.end()) ack = it->second;
    }
    if (ack) {
      ack(std::min(data.ack_offset(), kStreamGone - 1));
    } else {
      containers_->AckOutput(data.stream_id(), data.ack_offset());
    }
    return;
  }
  StreamHandler handler;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    auto it = streams_.find(data.stream_id());
    if (it == streams_.end()) return;  // closed or unknown: dropped
    handler = it->second;
  }
  handler(data.data(), data.eof());
}

void AgentServer::AddStreamHandler(uint32_t stream_id, StreamHandler handler) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_[stream_id] = std::move(handler);
}

void AgentServer::RemoveStreamHandler(uint32_t stream_id) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_.erase(stream_id);
}

void AgentServer::AddAckHandler(uint32_t stream_id, AckHandler handler) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  ack_handlers_[stream_id] = std::move(handler);
}

void AgentServer::RemoveAckHandler(uint32_t stream_id) {
  AckHandler handler;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    auto it = ack_handlers_.find(stream_id);
    if (it == ack_handlers_.end()) return;
    handler = std::move(it->second);
    ack_handlers_.erase(it);
  }
  handler(kStreamGone);
}

void AgentServer::Respond(uint64_t id, const v1::Response& response) {
  v1::Frame frame;
  frame.set_id(id);
  *frame.mutable_response() = response;
  Error err = channel_->WriteFrame(frame.SerializeAsString());
  if (!err.ok()) AgentLog(LogSeverity::kWarning, "respond: " + err.message());
}

Error AgentServer::SendStream(uint32_t stream_id, const std::string& data, bool eof) {
  v1::Frame frame;
  v1::StreamData* s = frame.mutable_stream();
  s->set_stream_id(stream_id);
  s->set_data(data);
  s->set_eof(eof);
  return channel_->WriteFrame(frame.SerializeAsString());
}

Error AgentServer::SendEvent(const v1::Event& event) {
  v1::Frame frame;
  *frame.mutable_event() = event;
  return channel_->WriteFrame(frame.SerializeAsString());
}

}  // namespace podvisor::agent
