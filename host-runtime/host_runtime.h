#pragma once

// The host runtime handler (docs/runtime-handlers.md): pods that need the node (host network,
// PID or IPC namespace, privileged) run as OCI containers on the host, by Debian's crun, each
// container watched by its own podvisor-monitor, which outlives podvisord.
//
//   sandbox    no pause container: a holder process keeps the pod's IPC/UTS/PID namespaces
//              (pod_namespaces.h); CNI networking (network/, without the VM's tap) unless the
//              pod uses the host's network; /etc/hosts, resolv.conf, hostname and /dev/shm
//              made for the pod in its directory
//   container  the image's erofs layers mounted read-only on the host under an overlay
//              (host_rootfs.h), config.json from the agent's OCI builder (agent/oci_spec.h),
//              `crun create` run by the monitor, `crun start/kill/exec/update/delete` here;
//              cgroups (cgroupfs) under the pod's cgroup_parent
//
// Records live in the same RecordStore as the VM handler's, under their own kinds
// (host_sandbox, host_container), so each handler recovers only its own. Thread-safe; calls on
// one sandbox or container are serialised.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "image/image_service.h"
#include "network/pod_network.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/sandbox.h"
#include "pod-sandbox/sandbox_controller.h"

namespace podvisor {

struct HostRuntimeOptions {
  std::string root_dir;   // durable: containers' bundles, rootfs uppers (<root>/host)
  std::string state_dir;  // per-boot: pod directories, crun's state (<state>/host)
  std::string crun = "/usr/bin/crun";
  std::string monitor;  // podvisor-monitor
  std::string cgroup_root = "/sys/fs/cgroup";
  absl::Duration monitor_timeout = absl::Seconds(30);
  size_t exec_output_limit = 16 * 1024 * 1024;
};

// The capabilities in this process's bounding set: what a privileged host container gets.
const std::vector<std::string>& BoundingCapabilities();

// The capabilities of a host container that is not privileged: BuildCapabilities's, where ALL
// means every capability in BoundingCapabilities(); FAILED_PRECONDITION naming a capability the
// config asks for by name (or a default) that the bounding set lacks.
absl::StatusOr<std::vector<std::string>> HostCapabilities(const ContainerConfig& config);

// True when the host handler can run here: crun and the monitor are executables.
bool HostRuntimeAvailable(const HostRuntimeOptions& options);

class HostRuntime {
 public:
  HostRuntime(HostRuntimeOptions options, SandboxStore* sandboxes, ContainerStore* containers,
              PodNetworkManager* network, ImageController* images);
  ~HostRuntime();
  HostRuntime(const HostRuntime&) = delete;
  HostRuntime& operator=(const HostRuntime&) = delete;

  // After a daemon restart: pods whose holder is gone become NOTREADY, containers whose monitor
  // recorded an exit (or is gone) EXITED; interrupted creates are undone; every running
  // container is found again through its monitor.
  absl::Status Recover();
  // Looks at every live container's monitor each `interval` and records an exit when it
  // happened, so that the exit is an event (GetContainerEvents) without waiting for a call to
  // look. Call once, after Recover(); the destructor stops it.
  void StartExitWatcher(absl::Duration interval);

  // --- sandboxes (SandboxMetadata::handler "host")
  bool OwnsSandbox(const std::string& id_or_prefix) const;
  absl::StatusOr<std::string> RunSandbox(const SandboxConfig& config);
  absl::Status StopSandbox(const std::string& id_or_prefix);
  absl::Status RemoveSandbox(const std::string& id_or_prefix);
  absl::StatusOr<Sandbox> InspectSandbox(const std::string& id_or_prefix) const;
  std::vector<Sandbox> ListSandboxes(const SandboxFilter& filter) const;
  // UpdatePodSandboxResources: the CPU quota and memory limit go to the pod's cgroup
  // (cgroup_parent, kubelet's pod cgroup, or /podvisor-host/<id16>) under each controller where
  // it exists. FAILED_PRECONDITION unless READY.
  absl::Status UpdateSandboxResources(const std::string& id_or_prefix,
                                      const SandboxResources& update);
  // The netns of a READY pod that has its own network ("" for a host-network pod).
  absl::StatusOr<std::string> SandboxNetns(const std::string& id) const;

  // --- containers of host sandboxes
  bool OwnsContainer(const std::string& id_or_prefix) const;
  absl::StatusOr<std::string> CreateContainer(const std::string& sandbox_id,
                                              const ContainerConfig& config);
  absl::Status StartContainer(const std::string& id);
  absl::Status StopContainer(const std::string& id, absl::Duration timeout);
  absl::Status RemoveContainer(const std::string& id);
  absl::StatusOr<Container> InspectContainer(const std::string& id);
  std::vector<Container> ListContainers(const ContainerFilter& filter);
  absl::StatusOr<ExecSyncResult> ExecSync(const std::string& id,
                                          const std::vector<std::string>& cmd,
                                          absl::Duration timeout);
  absl::Status ReopenLog(const std::string& id);
  absl::Status UpdateResources(const std::string& id, const ContainerLimits& update);
  absl::StatusOr<ContainerStatsInfo> Stats(const std::string& id);
  std::vector<ContainerStatsInfo> ListStats(const ContainerFilter& filter);
  // The pod's network traffic (from its netns) and its containers' stats; the pod-level CPU and
  // memory are left out (kubelet reads the pod cgroup itself on the host).
  absl::StatusOr<SandboxStatsInfo> SandboxStats(const std::string& id_or_prefix);
  bool ImageInUse(const std::string& image_id) const;

  // For streaming sessions: the crun command line (argv) that runs `process_args` in the
  // running container `id` with its own settings (a terminal when `tty`: the caller then adds
  // --console-socket before --process); FAILED_PRECONDITION unless it runs.
  absl::StatusOr<std::vector<std::string>> ExecCommand(const std::string& id,
                                                       const std::vector<std::string>& args,
                                                       bool tty, std::string* process_file);
  // The directory of the container's monitor (attach).
  absl::StatusOr<std::string> MonitorDir(const std::string& id);

 private:
  std::shared_ptr<std::mutex> LockFor(const std::string& id);
  std::vector<std::string> Crun(std::vector<std::string> args) const;
  std::string ContainerDir(const std::string& id) const;
  // Mounts the image volume `m` (the index-th mount) under the container's directory `dir` and
  // records it in meta->image_volumes; returns the directory or file to bind into the container.
  absl::StatusOr<std::string> MountImageVolume(const std::string& dir, size_t index,
                                               const ContainerMount& m, ContainerMetadata* meta);
  std::string CgroupsPath(const Sandbox& sandbox, const std::string& id) const;
  absl::Status WritePodFiles(const SandboxMetadata& meta, const std::string& ip) const;
  absl::StatusOr<std::string> BuildConfig(const Sandbox& sandbox, const ContainerMetadata& meta,
                                          const ImageRecord& image, const std::string& rootfs,
                                          ProcessSpec* resolved) const;
  // EXITED from the monitor's exit.json (or its absence) for a created/running container.
  // `at_recovery`: a created record without a monitor yet (pid 0) is what a crash inside
  // CreateContainer left, and is marked exited; otherwise it is a create under way, left alone.
  Container Refresh(Container c, bool at_recovery = false);
  absl::Status StopSandboxLocked(const Sandbox& sandbox);
  absl::Status RemoveContainerLocked(const Container& c);
  absl::Status KillAndWait(const Container& c, int signal, absl::Duration wait);
  void WatchExits(absl::Duration interval);

  const HostRuntimeOptions options_;
  SandboxStore* const sandboxes_;
  ContainerStore* const containers_;
  PodNetworkManager* const network_;
  ImageController* const images_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_ ABSL_GUARDED_BY(mu_);

  absl::Mutex watch_mu_;
  bool stop_watching_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread exit_watcher_;
};

}  // namespace podvisor
