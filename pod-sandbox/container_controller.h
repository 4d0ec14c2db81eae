#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hypervisor/hypervisor.h"
#include "image/image_service.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/container.h"
#include "pod-sandbox/container_log_writer.h"
#include "pod-sandbox/guest_disk.h"
#include "pod-sandbox/layer_disks.h"
#include "pod-sandbox/sandbox.h"
#include "pod-sandbox/sandbox_view.h"
#include "pod-sandbox/shared_directory_volumes.h"
#include "pod-sandbox/snapshot_volumes.h"
#include "pod-sandbox/volume_share.h"

namespace podvisor {

struct ContainerOutput;  // container_output.h: a container's live output in this daemon

struct ContainerControllerOptions {
  absl::Duration agent_call_timeout = absl::Seconds(30);
  // ExecSync keeps at most this much of each of stdout and stderr (kubelet's own bound).
  size_t exec_output_limit = 16 * 1024 * 1024;
  // After a process exited, how long its output may still trail behind.
  absl::Duration output_drain_timeout = absl::Seconds(3);
  // ListContainerStats / ListPodSandboxStats ask the pods' agents in parallel, this many at a
  // time, each for at most `stats_agent_timeout` (config `stats.*`, docs/reliability.md): a
  // stalled guest costs that much and its pod is reported without guest figures.
  size_t stats_max_parallel = 16;
  absl::Duration stats_agent_timeout = absl::Seconds(2);
  // > 0: a kubelet emptyDir bound into a pod VM's shared directory gets a tmpfs of this size.
  uint64_t empty_dir_max_bytes = 0;
};

struct ExecSyncResult {
  std::string stdout_data;
  std::string stderr_data;
  int32_t exit_code = 0;
};

// What it takes to start another process in a running container: the agent of its pod VM and the
// process settings the container was created with (env, cwd, user, capabilities). The caller sets
// args, terminal and stream ids.
struct ExecTarget {
  std::string container_id;  // the full id
  std::shared_ptr<AgentClient> agent;
  ProcessSpec process;
  bool tty = false;  // the container's own settings (for attach)
  bool stdin = false;
  bool stdin_once = false;
};

// Receives a running container's output next to its log file (attach). Called on the agent's
// reader thread: must not block. `eof` once per stream; with a TTY only kStdout is used.
using OutputConsumer = std::function<void(LogStream which, absl::string_view data, bool eof)>;

struct ContainerStatsInfo {
  Container container;
  GuestContainerStats stats;
  // False when there are no figures: the container is not running, or its guest did not answer
  // in time. Such a container is reported with its attributes only (as containerd reports a
  // container whose task gave no metrics), never with zeros.
  bool measured = false;
};

// PodSandboxStats: the sandbox, what its VM costs the node (host side), the guest's own totals
// and the stats of its containers (docs/containers.md says which figure means what).
struct SandboxStatsInfo {
  Sandbox sandbox;
  VmHostStats host;
  std::optional<GuestSandboxStats> guest;  // unset when the agent did not answer
  std::vector<ContainerStatsInfo> containers;
  // The VM's CPU use since this daemon's previous sample of this sandbox, in nanocores.
  std::optional<uint64_t> vm_nano_cores;
};

// What Reconcile released: pieces of containers that no record owns.
struct ReconcileResult {
  std::vector<std::string> guest_containers;  // ids removed in the guest
  std::vector<std::string> disks;             // serials detached from the VM
  std::vector<std::string> shared_dirs;       // container ids whose shared-directory binds went
  std::vector<std::string> files;  // host files removed (volume snapshot images, log positions)
};

// Owns the containers of pod sandboxes: their durable records, their root filesystems (image
// layers hot-plugged into the pod VM as read-only erofs disks and stacked by an overlay with a
// writable upper in guest RAM), their processes (through the sandbox's AgentClient) and their log
// files. Exits come from agent events. Operations on one container are serialised; everything
// else runs in parallel. Thread-safe.
class ContainerController {
 public:
  ContainerController(ContainerControllerOptions options, ContainerStore* containers,
                      SandboxStore* sandboxes, SandboxView* sandbox_view, Hypervisor* hypervisor,
                      ImageController* images);
  ~ContainerController();

  // Registers the sandbox hooks (exit events, sandbox stop/remove ordering) and the image in-use
  // check. Call once before serving and before SandboxController::Recover().
  void Install();
  // After a daemon restart: containers whose sandbox is gone or not ready are EXITED, and every
  // ready sandbox is reconciled.
  absl::Status Recover();
  // Releases what the sandbox's guest, VM and shared directory hold that no container record
  // owns: guest containers (removed), hot-plugged disks (unmounted and detached), shared-directory
  // bind mounts and volume snapshot images. Run at recovery, before any container call.
  absl::StatusOr<ReconcileResult> Reconcile(const Sandbox& sandbox);

  absl::StatusOr<std::string> Create(const std::string& sandbox_id, const ContainerConfig& config);
  absl::Status Start(const std::string& id);
  // SIGTERM, then SIGKILL after `timeout` (zero: SIGKILL at once). Stopped containers succeed.
  absl::Status Stop(const std::string& id, absl::Duration timeout);
  // Stops (killing) if running, then removes everything. Unknown ids succeed.
  absl::Status Remove(const std::string& id);
  absl::StatusOr<Container> Inspect(const std::string& id) const;
  std::vector<Container> List(const ContainerFilter& filter) const;
  // Runs `cmd` in the container; DEADLINE_EXCEEDED when it outlives `timeout` (zero: no limit).
  absl::StatusOr<ExecSyncResult> ExecSync(const std::string& id,
                                          const std::vector<std::string>& cmd,
                                          absl::Duration timeout);
  absl::Status ReopenLog(const std::string& id);

  // For exec sessions: FAILED_PRECONDITION unless the container is running.
  absl::StatusOr<ExecTarget> PrepareExec(const std::string& id_or_prefix);
  // Attach: `consumer` gets the main process's output from now on (a stream that already ended
  // gets its EOF at once) until RemoveOutputConsumer. Several consumers may be registered.
  absl::StatusOr<uint64_t> AddOutputConsumer(const std::string& id, OutputConsumer consumer);
  void RemoveOutputConsumer(const std::string& id, uint64_t handle);
  // Writes to the main process's stdin (FAILED_PRECONDITION if it was created without stdin).
  absl::Status WriteStdin(const std::string& id, absl::string_view data, bool eof);
  absl::StatusOr<ContainerStatsInfo> Stats(const std::string& id);
  std::vector<ContainerStatsInfo> ListStats(const ContainerFilter& filter);
  // NOT_FOUND for an unknown sandbox; UNAVAILABLE for one that is not ready (as containerd).
  absl::StatusOr<SandboxStatsInfo> SandboxStats(const std::string& sandbox_id_or_prefix);
  // The ready sandboxes that match (the others have no stats and are left out).
  std::vector<SandboxStatsInfo> ListSandboxStats(const SandboxFilter& filter);

  // UpdateContainerResources: the limits `update` sets (0 / empty: unchanged) go to the
  // container's guest cgroup at once and into its record (ContainerStatus.resources).
  // NOT_FOUND for an unknown container, FAILED_PRECONDITION unless it is created or running,
  // INVALID_ARGUMENT for values no cgroup takes.
  absl::Status UpdateResources(const std::string& id, const ContainerLimits& update);

  bool ImageInUse(const std::string& image_id) const;

  // Sandbox hooks (public for tests).
  void OnAgentEvent(const std::string& sandbox_id, const AgentEvent& event);
  void OnSandboxStopped(const std::string& sandbox_id);
  absl::Status OnSandboxRemoving(const std::string& sandbox_id);

 private:
  std::shared_ptr<std::mutex> LockFor(const std::string& id);
  std::shared_ptr<std::mutex> SandboxLockFor(const std::string& sandbox_id);
  absl::StatusOr<std::string> ResolveId(const std::string& id_or_prefix) const;
  // The volume mode of a sandbox: the one place that chooses.
  VolumeShare& VolumesFor(const Sandbox& sandbox);
  // What the sandbox's containers attached already, by layer image path (the caller holds the
  // sandbox lock).
  std::map<std::string, LayerDisk> AttachedLayers(const std::string& sandbox_id) const;
  // Attaches the layers of each image volume of `config` (CRI Mount.image) and records them in
  // meta->image_volumes (the caller holds the sandbox lock and detaches HeldLayers(*meta) when
  // creation fails later). NOT_FOUND for an image that is not pulled.
  absl::Status AttachImageVolumes(const std::string& sandbox_id, AgentClient& agent,
                                  const ContainerConfig& config, ContainerMetadata* meta);
  // Detaches the layers of `removed_id` that no other container of the sandbox uses.
  void DetachUnusedLayers(const std::string& sandbox_id, const std::vector<LayerDisk>& layers,
                          const std::string& removed_id);
  // Detaches a container's volumes (the sandbox record gone: its directories went with it).
  void DetachVolumes(const std::string& sandbox_id, const std::string& container_id,
                     const ContainerVolumes& volumes);
  // The live side of a container: its log writer (appending), its position file (truncated when
  // `fresh`) and new stream ids for its output (and stdin) whose bytes go to the log.
  absl::StatusOr<std::shared_ptr<ContainerOutput>> NewOutput(
      const ContainerMetadata& meta, const std::string& sandbox_state_dir,
      const std::shared_ptr<AgentClient>& agent, bool fresh);
  // After a daemon restart: takes the output of a container that lives on over from where the
  // log file ends (the guest replays the rest) and watches for its exit.
  absl::Status ReattachOutput(const Container& c, const Sandbox& sandbox);
  void MarkExited(const std::string& id, const ExitInfo& exit, const std::string& message);
  void DropOutput(const std::string& id);
  absl::Status RemoveLocked(const Container& c);
  absl::StatusOr<SandboxStatsInfo> SandboxStatsOf(const Sandbox& sandbox);

  const ContainerControllerOptions options_;
  ContainerStore* const containers_;
  SandboxStore* const sandboxes_;
  SandboxView* const sandbox_view_;
  Hypervisor* const hypervisor_;
  ImageController* const images_;
  DiskSlots disk_slots_;
  LayerDisks layer_disks_;
  SharedDirectoryVolumes shared_directory_volumes_;
  SnapshotVolumes snapshot_volumes_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<std::mutex>> sandbox_locks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<ContainerOutput>> outputs_ ABSL_GUARDED_BY(mu_);
  // The previous VM CPU sample per sandbox (time, cpu ns), for nanocores.
  std::map<std::string, std::pair<int64_t, uint64_t>> last_vm_cpu_ ABSL_GUARDED_BY(mu_);
};

}  // namespace podvisor
