// HostRuntime: the container side (crun on the host, a monitor per container).

#include <signal.h>
#include <unistd.h>

#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/image_volume.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/status_util.h"
#include "host-runtime/host_rootfs.h"
#include "host-runtime/host_runtime.h"
#include "host-runtime/monitor_client.h"
#include "network/process.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {
namespace {

constexpr absl::Duration kCrunTimeout = absl::Seconds(30);
constexpr absl::Duration kExitPoll = absl::Milliseconds(50);

std::string MonitorDirOf(const std::string& container_dir) { return container_dir + "/monitor"; }

absl::Status RunCrun(const std::vector<std::string>& argv, const std::string& what) {
  network::ProcessOptions p;
  p.argv = argv;
  p.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  p.timeout = kCrunTimeout;
  absl::StatusOr<network::ProcessResult> r = network::RunProcess(p);
  if (!r.ok()) return WithContext(r.status(), what);
  if (r->exit_code != 0) {
    std::string why = r->stderr_data.empty() ? r->stdout_data : r->stderr_data;
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return absl::InternalError(absl::StrCat(what, ": crun: ", why));
  }
  return absl::OkStatus();
}

}  // namespace

bool HostRuntime::OwnsContainer(const std::string& id_or_prefix) const {
  return !id_or_prefix.empty() && containers_->Resolve(id_or_prefix).ok();
}

// A hybrid cgroup host whose v2 side holds controllers: crun must not see that side.
bool HybridWithV2Controllers(const std::string& cgroup_root) {
  absl::StatusOr<std::string> controllers = ReadFile(cgroup_root + "/unified/cgroup.controllers");
  return controllers.ok() && !absl::StripAsciiWhitespace(*controllers).empty() &&
         ::access((cgroup_root + "/cgroup.controllers").c_str(), F_OK) != 0;
}

std::vector<std::string> HostRuntime::Crun(std::vector<std::string> args) const {
  static const bool hide_unified = HybridWithV2Controllers(options_.cgroup_root);
  std::vector<std::string> argv;
  if (hide_unified) argv = {options_.monitor, "--hide-unified-cgroup", "--"};
  argv.insert(argv.end(), {options_.crun, "--root", options_.state_dir + "/crun"});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

absl::StatusOr<std::string> HostRuntime::MountImageVolume(const std::string& dir, size_t index,
                                                          const ContainerMount& m,
                                                          ContainerMetadata* meta) {
  const std::string what = absl::StrCat("image volume ", m.image, " at ", m.container_path);
  absl::StatusOr<ImageVolumeSource> source_image = ResolveImageVolume(*images_, m);
  if (!source_image.ok()) return source_image.status();
  const std::vector<std::string>& layers = source_image->layer_paths;
  const std::string base = absl::StrCat(dir, "/image-volumes/", index);
  std::vector<std::string> lowers;  // top first
  for (size_t j = 0; j < layers.size(); ++j) {
    const std::string target = absl::StrCat(base, "/layer-", j);
    if (absl::Status s = MakeDirs(target, 0700); !s.ok()) return WithContext(s, what);
    if (absl::Status s = host::MountErofs(layers[j], target); !s.ok()) {
      return WithContext(s, what);
    }
    lowers.insert(lowers.begin(), target);
  }
  std::vector<std::string> mounts;
  std::string source;
  if (agent::Error e =
          agent::MountImageVolume(lowers, m.image_sub_path, base + "/volume", &mounts, &source);
      !e.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(e.code()),
                        absl::StrCat(what, ": ", e.message()));
  }
  // Held in use by the record; the layers are the host's mounts, not a VM's disks.
  meta->image_volumes.push_back(
      ImageVolumeRecord{m.container_path, source_image->image.metadata.id, m.image_sub_path, {}});
  return source;
}

std::string HostRuntime::ContainerDir(const std::string& id) const {
  return absl::StrCat(options_.root_dir, "/containers/", id);
}

absl::StatusOr<std::string> HostRuntime::CreateContainer(const std::string& sandbox_id,
                                                         const ContainerConfig& config) {
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(sandbox_id);
  if (!sandbox.ok()) return sandbox.status();
  const SandboxMetadata& sm = sandbox->metadata;
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("sandbox ", ShortId(sm.id), " is not ready"));
  }
  if (absl::Status s = ValidateContainerConfig(config); !s.ok()) return s;
  absl::StatusOr<ImageRecord> image = images_->Get(config.image);
  if (!image.ok()) return WithContext(image.status(), absl::StrCat("image ", config.image));
  absl::StatusOr<std::vector<std::string>> layers = images_->LayerImages(image->metadata.id);
  if (!layers.ok()) return layers.status();

  Container c;
  ContainerMetadata& meta = c.metadata;
  meta.id = NewObjectId();
  meta.name = ContainerName(config.name, sm.pod_name, sm.pod_namespace, sm.pod_uid, config.attempt);
  meta.sandbox_id = sm.id;
  meta.config = config;
  meta.image_id = image->metadata.id;
  meta.image_ref =
      image->status.repo_digests.empty() ? image->metadata.id : image->status.repo_digests.front();
  if (!config.log_path.empty() && !sm.log_directory.empty()) {
    meta.log_path = absl::StrCat(sm.log_directory, "/", config.log_path);
  }
  meta.created_at_ns = absl::ToUnixNanos(absl::Now());
  meta.stop_signal = StopSignalOf(config, image->metadata);
  const std::string context = absl::StrCat("create host container ", config.name);
  const std::string dir = ContainerDir(meta.id);
  const std::string monitor_dir = MonitorDirOf(dir);
  auto lock = LockFor(meta.id);
  std::lock_guard<std::mutex> guard(*lock);
  if (absl::Status s = MakeDirs(monitor_dir, 0700); !s.ok()) return WithContext(s, context);
  if (absl::Status s = MakeDirs(dir + "/bundle", 0700); !s.ok()) return WithContext(s, context);
  absl::Cleanup remove_dir = [&] {
    (void)host::UnmountRootfs(dir);
    (void)RemoveAll(dir);
  };
  if (!meta.log_path.empty()) {
    const std::string parent = meta.log_path.substr(0, meta.log_path.find_last_of('/'));
    if (absl::Status s = MakeDirs(parent, 0755); !s.ok()) return WithContext(s, context);
  }
  absl::StatusOr<std::string> rootfs = host::MountRootfs(dir, *layers);
  if (!rootfs.ok()) return WithContext(rootfs.status(), context);
  // Recursive read-only mounts bind a staged copy of the host tree, read-only at every depth;
  // the record keeps the host path the container asked for.
  ContainerMetadata staged = meta;
  for (size_t i = 0; i < staged.config.mounts.size(); ++i) {
    ContainerMount& m = staged.config.mounts[i];
    if (!m.image.empty()) {
      // An image volume: its layers' erofs images stacked read-only under the container's
      // directory (unmounted with its rootfs), bound like a host path.
      absl::StatusOr<std::string> source = MountImageVolume(dir, i, m, &meta);
      if (!source.ok()) return WithContext(source.status(), context);
      m.host_path = *source;
      m.propagation = MountPropagation::kPrivate;
      continue;
    }
    if (!m.recursive_read_only) continue;
    absl::StatusOr<std::string> copy = host::StageRecursiveReadOnly(dir, i, m.host_path);
    if (!copy.ok()) return WithContext(copy.status(), context);
    m.host_path = *copy;
  }
  ProcessSpec resolved;
  absl::StatusOr<std::string> json = BuildConfig(*sandbox, staged, *image, *rootfs, &resolved);
  if (!json.ok()) return WithContext(json.status(), context);
  meta.env = resolved.env;
  meta.cwd = resolved.cwd;
  meta.uid = resolved.user.uid;
  meta.gid = resolved.user.gid;
  // Resolved here on the host, against the image's files, as the agent does in a VM.
  meta.resolved_user = ContainerUser{resolved.user.uid.value_or(0), resolved.user.gid,
                                     resolved.user.additional_gids};
  if (absl::Status s = WriteFileAtomic(dir + "/bundle/config.json", *json, 0600); !s.ok()) {
    return WithContext(s, context);
  }
  // The record first: a crash from here on leaves a record that Recover() finds and cleans.
  // Provisional until the container exists: nobody else sees it before (no event, not listed).
  c.status.provisional = true;
  if (absl::Status s = containers_->Add(c); !s.ok()) {
    if (s.code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat("container ", s.message()));
    }
    return WithContext(s, context);
  }
  absl::Cleanup remove_record = [&] { (void)containers_->Remove(meta.id); };
  host::MonitorOptions mo;
  mo.id = meta.id;
  mo.dir = monitor_dir;
  mo.pid_file = monitor_dir + "/container.pid";
  mo.create_argv =
      Crun({"create", "--bundle", dir + "/bundle", "--pid-file", mo.pid_file, meta.id});
  mo.log_path = meta.log_path;
  mo.memory_cgroup = absl::StrCat(options_.cgroup_root, "/memory", CgroupsPath(*sandbox, meta.id));
  mo.stdin = config.stdin;
  mo.stdin_once = config.stdin_once;
  mo.tty = config.tty;
  absl::StatusOr<host::StartedMonitor> started =
      host::StartMonitor(options_.monitor, mo, options_.monitor_timeout);
  if (!started.ok()) {
    (void)RunCrun(Crun({"delete", "--force", meta.id}), "undo create");
    return WithContext(started.status(), context);
  }
  auto updated = containers_->Update(meta.id, [&](ContainerStatus& st) {
    st.pid = static_cast<uint32_t>(started->container_pid);
    st.resources = config.resources;
    st.provisional = false;
    return absl::OkStatus();
  });
  if (!updated.ok()) {
    (void)RunCrun(Crun({"delete", "--force", meta.id}), "undo create");
    return WithContext(updated.status(), context);
  }
  // crun has bound the staged copies in the container's mount namespace: the node's goes.
  if (absl::Status s = host::DetachRecursiveReadOnly(dir); !s.ok()) {
    PV_LOG(kWarning) << "host container " << ShortId(meta.id) << ": " << s.message();
  }
  std::move(remove_record).Cancel();
  std::move(remove_dir).Cancel();
  PV_LOG(kInfo) << "host container " << ShortId(meta.id) << " (" << meta.name << ") created in pod "
                << ShortId(sm.id) << ", pid " << started->container_pid;
  return meta.id;
}

absl::Status HostRuntime::StartContainer(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = containers_->Resolve(id_or_prefix);
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  Container now = Refresh(*c);
  if (now.status.state != ContainerState::kCreated) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", ShortId(*id), " is not created (it has been started)"));
  }
  const int64_t started_at = absl::ToUnixNanos(absl::Now());
  if (absl::Status s =
          RunCrun(Crun({"start", *id}), absl::StrCat("start container ", ShortId(*id)));
      !s.ok()) {
    return s;
  }
  return containers_
      ->Update(*id,
               [&](ContainerStatus& st) {
                 if (st.state == ContainerState::kCreated) st.state = ContainerState::kRunning;
                 st.started_at_ns = started_at;
                 return absl::OkStatus();
               })
      .status();
}

Container HostRuntime::Refresh(Container c, bool at_recovery) {
  if (c.status.state != ContainerState::kCreated && c.status.state != ContainerState::kRunning) {
    return c;
  }
  // CreateContainer writes the record before it starts the monitor: a status or list call (or
  // the container events it causes) meanwhile must not take the missing monitor for a dead one.
  if (!at_recovery && c.status.state == ContainerState::kCreated && c.status.pid == 0) return c;
  const std::string dir = MonitorDirOf(ContainerDir(c.metadata.id));
  absl::StatusOr<host::MonitorExit> exit = host::ReadMonitorExit(dir);
  std::string message;
  if (!exit.ok()) {
    if (host::LiveMonitor(dir) > 0) return c;
    // Look again: the monitor may have written its exit and gone in between.
    exit = host::ReadMonitorExit(dir);
    if (!exit.ok()) {
      host::MonitorExit lost;
      lost.exit_code = 255;
      lost.finished_at_ns = absl::ToUnixNanos(absl::Now());
      exit = lost;
      message = "the container's monitor is gone (node rebooted, or it was killed)";
    }
  }
  auto updated = containers_->Update(c.metadata.id, [&](ContainerStatus& st) {
    if (st.state == ContainerState::kExited) return absl::CancelledError("already exited");
    st.state = ContainerState::kExited;
    st.exit_code = exit->exit_code;
    st.finished_at_ns = exit->finished_at_ns;
    st.reason = exit->oom_killed ? "OOMKilled" : exit->exit_code == 0 ? "Completed" : "Error";
    st.message = message;
    return absl::OkStatus();
  });
  if (updated.ok()) return *updated;
  absl::StatusOr<Container> again = containers_->Get(c.metadata.id);
  return again.ok() ? *again : c;
}

HostRuntime::~HostRuntime() {
  {
    absl::MutexLock lock(&watch_mu_);
    stop_watching_ = true;
  }
  if (exit_watcher_.joinable()) exit_watcher_.join();
}

void HostRuntime::StartExitWatcher(absl::Duration interval) {
  exit_watcher_ = std::thread([this, interval] { WatchExits(interval); });
}

void HostRuntime::WatchExits(absl::Duration interval) {
  for (;;) {
    {
      absl::MutexLock lock(&watch_mu_);
      if (watch_mu_.AwaitWithTimeout(absl::Condition(&stop_watching_), interval)) return;
    }
    for (const Container& listed : containers_->List()) {
      // Only running containers: a created one is still being set up by CreateContainer (its
      // monitor may not answer yet) or waits for StartContainer, which looks itself.
      if (listed.status.state != ContainerState::kRunning) continue;
      // Under the container's lock, as every call that changes it: never beside a Stop or
      // Remove of the same container.
      auto lock = LockFor(listed.metadata.id);
      std::lock_guard<std::mutex> guard(*lock);
      absl::StatusOr<Container> c = containers_->Get(listed.metadata.id);
      if (c.ok() && c->status.state == ContainerState::kRunning) Refresh(*c);
    }
  }
}

absl::Status HostRuntime::KillAndWait(const Container& c, int signal, absl::Duration wait) {
  if (c.status.state == ContainerState::kExited) return absl::OkStatus();
  const std::string& id = c.metadata.id;
  const std::string dir = MonitorDirOf(ContainerDir(id));
  if (host::LiveMonitor(dir) == 0) {
    Refresh(c);
    return absl::OkStatus();
  }
  // --all: every process of the container's cgroup, not only its init (which, as PID 1 of its
  // namespace, ignores signals it has no handler for).
  std::vector<std::string> args = {"kill"};
  if (signal == SIGKILL) args.push_back("--all");
  args.insert(args.end(), {id, std::to_string(signal)});
  absl::Status killed = RunCrun(Crun(args), absl::StrCat("signal container ", ShortId(id)));
  const absl::Time deadline = absl::Now() + wait;
  while (absl::Now() < deadline) {
    if (host::ReadMonitorExit(dir).ok() || host::LiveMonitor(dir) == 0) {
      Refresh(c);
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(kExitPoll));
  }
  if (!killed.ok()) return killed;
  return absl::DeadlineExceededError(
      absl::StrCat("container ", ShortId(id), " did not exit within ", absl::FormatDuration(wait)));
}

absl::Status HostRuntime::StopContainer(const std::string& id_or_prefix, absl::Duration timeout) {
  absl::StatusOr<std::string> id = containers_->Resolve(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return absl::IsNotFound(c.status()) ? absl::OkStatus() : c.status();
  Container now = Refresh(*c);
  if (now.status.state == ContainerState::kExited) return absl::OkStatus();
  if (timeout > absl::ZeroDuration()) {
    absl::Status s = KillAndWait(now, now.metadata.stop_signal, timeout);
    if (s.ok()) return s;
    if (!absl::IsDeadlineExceeded(s)) PV_LOG(kWarning) << s;
  }
  return KillAndWait(now, SIGKILL, absl::Seconds(10));
}

absl::Status HostRuntime::RemoveContainerLocked(const Container& c) {
  const std::string& id = c.metadata.id;
  const std::string dir = ContainerDir(id);
  if (absl::Status s = KillAndWait(Refresh(c), SIGKILL, absl::Seconds(10)); !s.ok()) return s;
  (void)RunCrun(Crun({"delete", "--force", id}), "delete");  // gone already is fine
  if (absl::Status s = host::UnmountRootfs(dir); !s.ok()) {
    return WithContext(s, absl::StrCat("remove container ", ShortId(id)));
  }
  if (absl::Status s = RemoveAll(dir); !s.ok()) {
    return WithContext(s, absl::StrCat("remove container ", ShortId(id)));
  }
  return containers_->Remove(id);
}

absl::Status HostRuntime::RemoveContainer(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = containers_->Resolve(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  {
    std::lock_guard<std::mutex> guard(*lock);
    absl::StatusOr<Container> c = containers_->Get(*id);
    if (absl::IsNotFound(c.status())) return absl::OkStatus();
    if (!c.ok()) return c.status();
    if (absl::Status s = RemoveContainerLocked(*c); !s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  locks_.erase(*id);
  return absl::OkStatus();
}

absl::StatusOr<Container> HostRuntime::InspectContainer(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = containers_->Resolve(id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  return Refresh(*c);
}

std::vector<Container> HostRuntime::ListContainers(const ContainerFilter& filter) {
  std::vector<Container> out;
  for (const Container& c : containers_->List()) {
    if (c.status.provisional) continue;  // a create under way
    Container now = Refresh(c);
    if (ContainerMatches(now, filter)) out.push_back(std::move(now));
  }
  return out;
}

bool HostRuntime::ImageInUse(const std::string& image_id) const {
  for (const Container& c : containers_->List()) {
    if (UsesImage(c.metadata, image_id)) return true;
  }
  return false;
}

absl::StatusOr<std::string> HostRuntime::MonitorDir(const std::string& id_or_prefix) {
  absl::StatusOr<Container> c = InspectContainer(id_or_prefix);
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", ShortId(c->metadata.id), " is not running"));
  }
  return MonitorDirOf(ContainerDir(c->metadata.id));
}

}  // namespace podvisor
