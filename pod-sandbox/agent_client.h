#pragma once

// The host's client of the guest agent (see docs/agent-protocol.md). One AgentClient owns one
// channel to one VM: a unix socket that QEMU binds for the guest's virtio-serial port
// `io.podvisor.agent.0`. Calls are multiplexed with request ids; each call has its own deadline;
// stdio and port-forward bytes travel on numbered streams; a heartbeat notices a dead guest.
//
// Everything from the guest is untrusted: frames are bounded, every field is validated, and a
// malformed frame closes the channel (the disconnect callback says why) without harming the
// daemon. Domain types only here: the generated protobuf code stays in agent_client_impl.cc.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pod-sandbox/container.h"

namespace podvisor {

// What the handshake told about the guest.
struct AgentInfo {
  int protocol_version = 0;
  std::string agent_version;
  std::string kernel_release;
  int64_t boot_time_ns = 0;  // guest wall clock at boot
  int64_t uptime_ns = 0;
  std::vector<std::string> features;  // "sandbox", "network", "containers", ...
  uint32_t pid = 0;
};

struct DnsConfig {
  std::vector<std::string> servers;
  std::vector<std::string> searches;
  std::vector<std::string> options;
};

struct HostEntry {
  std::string ip;
  std::vector<std::string> names;
};

struct SandboxSetup {
  std::string hostname;
  std::optional<DnsConfig> dns;
  std::vector<HostEntry> hosts;
  int64_t wall_time_ns = 0;  // 0: leave the guest clock alone
  std::string entropy;       // at most 4096 bytes, credited to the guest RNG
  std::map<std::string, std::string> sysctls;
  std::string shared_fs_tag;  // non-empty: mount that filesystem at kGuestSharedDir
  std::string shared_fs_type;  // "virtiofs" (empty) or "9p"
  std::string machine_id;      // non-empty: written to /etc/machine-id (32 hex digits)
};

// Where the guest mounts the directory the host shares with it (SandboxSetup::shared_fs_tag).
inline constexpr char kGuestSharedDir[] = "/run/podvisor/shared";

struct GuestInterface {
  std::string mac;    // selects the guest NIC
  std::string set_mac;  // non-empty: give that NIC this MAC first (template clones)
  std::string name;   // rename to (optional)
  uint32_t mtu = 0;
  std::vector<std::string> addresses;  // CIDR
  bool up = true;
};

struct GuestRoute {
  std::string destination;  // CIDR, empty for default
  std::string gateway;
  std::string device;
  uint32_t metric = 0;
};

struct NetworkSetup {
  std::vector<GuestInterface> interfaces;
  std::vector<GuestRoute> routes;
  bool loopback_up = true;
};

struct GuestUser {
  std::optional<uint32_t> uid;
  uint32_t gid = 0;
  // No group was asked for: the agent takes the user's from the image's /etc/passwd (0 when the
  // image does not list the user).
  bool gid_from_passwd = false;
  std::vector<uint32_t> additional_gids;
  std::string username;
  // SupplementalGroupsPolicy Strict: the agent adds no groups from the image's /etc/group.
  bool strict_groups = false;
};

// The pod's own limits in the guest (UpdatePodSandboxResources): on the cgroup every
// container's is under.
struct PodLimits {
  int64_t memory_limit_bytes = 0;  // 0: no limit
  int64_t cpu_quota = 0;           // us; 0: leave it; -1: no limit
  int64_t cpu_period = 0;          // us; 0: 100000
};

struct ProcessSpec {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd;
  GuestUser user;
  bool terminal = false;
  uint32_t stdin_stream = 0;  // stream ids from AllocateStreamId(); 0: not connected
  uint32_t stdout_stream = 0;
  uint32_t stderr_stream = 0;
  bool no_new_privileges = false;
  std::vector<std::string> capabilities;  // bounding = effective = permitted
  // The host acknowledges output (AckStream) and may take it over after a restart
  // (AttachOutput): the agent holds unacknowledged bytes (bounded) until then.
  bool acked_output = false;
  // Non-zero: the host acknowledges output as its consumer takes it (AckStream); the agent holds
  // at most this many bytes per stream unacknowledged and stops reading the pipe beyond.
  uint32_t output_window = 0;
};

// A restarted host takes a container's output over (see AgentClient::AttachOutput).
struct OutputAttach {
  uint32_t stdout_stream = 0;  // new ids from AllocateStreamId(); 0: not wanted
  uint32_t stderr_stream = 0;
  uint32_t stdin_stream = 0;   // 0: leave stdin alone
  uint64_t stdout_offset = 0;  // first byte wanted of each stream, counted from its start
  uint64_t stderr_offset = 0;
};

struct OutputAttached {
  uint64_t stdout_offset = 0;  // where delivery starts (> the offset asked: bytes were lost)
  uint64_t stderr_offset = 0;
  bool exited = false;
};

struct GuestMount {
  std::string destination;
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

// An image mounted as a volume: its layers' guest mounts (top first) stacked read-only, or the
// part at sub_path. A GuestMount whose source is "image-volume:<index>" names one.
struct GuestImageVolume {
  std::vector<std::string> lower_dirs;
  std::string sub_path;
};

// Cgroup limits of a container (0 / empty: not set; at update: left as it is).
struct ContainerResources {
  uint64_t cpu_shares = 0;
  int64_t cpu_quota = 0;
  uint64_t cpu_period = 0;
  std::string cpuset_cpus;
  std::string cpuset_mems;
  int64_t memory_limit_bytes = 0;
  int64_t memory_swap_limit_bytes = 0;  // memory + swap, as in OCI
  int64_t pids_limit = 0;
  std::map<std::string, uint64_t> hugepage_limits;  // page size ("2MB") -> bytes
  std::map<std::string, std::string> unified;       // raw cgroup v2 files
  std::optional<int32_t> oom_score_adj;             // of the container's processes
};

struct ContainerSpec {
  ProcessSpec process;
  // Root filesystem: an attached disk by serial, or a directory already in the guest.
  std::string rootfs_disk_serial;
  std::string rootfs_fs_type;
  // Mount the disk read-only and give the container a writable overlay upper (in guest RAM).
  bool rootfs_overlay = false;
  std::vector<std::string> rootfs_options;
  std::string rootfs_path;
  // Or a mount the agent makes (e.g. an overlay of layer disks already mounted in the guest; an
  // overlay without `upperdir=` gets a writable upper in guest RAM).
  std::optional<GuestMount> rootfs_mount;
  bool readonly_rootfs = false;
  std::vector<GuestMount> mounts;
  std::vector<GuestImageVolume> image_volumes;
  std::string hostname;
  std::vector<std::string> masked_paths;
  std::vector<std::string> readonly_paths;
  std::string seccomp_oci_json;
  std::map<std::string, std::string> sysctls;
  ContainerResources resources;
  bool privileged = false;
  // true: the container runs in the VM's (the pod's) PID namespace; false: its own.
  bool share_pid_namespace = false;
  // The pod's user namespace, which the container joins; unset: the guest's.
  std::optional<PodUserNamespace> user_namespace{};
};

struct ExitInfo {
  int32_t exit_code = 0;
  int32_t signal = 0;
  bool oom_killed = false;
  int64_t started_at_ns = 0;
  int64_t finished_at_ns = 0;
};

// The CRI exit code of a process: its exit status, or 128+signal when a signal ended it.
inline int32_t ExitCodeOf(const ExitInfo& exit) {
  if (exit.signal > 0 && exit.exit_code == 0) return 128 + exit.signal;
  return exit.exit_code;
}

struct GuestContainerStats {
  std::string container_id;
  int64_t timestamp_ns = 0;
  uint64_t cpu_usage_ns = 0;
  uint64_t memory_working_set_bytes = 0;
  uint64_t memory_usage_bytes = 0;
  uint64_t rootfs_used_bytes = 0;
  uint64_t memory_rss_bytes = 0;
  uint64_t page_faults = 0;
  uint64_t major_page_faults = 0;
  uint32_t pids = 0;
};

// A container as the guest's agent knows it (ListContainers).
struct GuestContainer {
  enum class State { kCreated, kRunning, kExited };
  std::string id;
  State state = State::kCreated;
  uint32_t pid = 0;  // its init process in the guest; 0 while it is being created
};

// The whole guest at one moment, with the stats of its containers.
struct GuestSandboxStats {
  int64_t timestamp_ns = 0;
  std::vector<GuestContainerStats> containers;
  uint64_t memory_total_bytes = 0;
  uint64_t memory_available_bytes = 0;
  uint64_t memory_used_bytes = 0;  // total - available
  uint64_t cpu_usage_ns = 0;       // every process of the guest (its root cgroup)
  uint32_t process_count = 0;
};

// The guest as its agent sees it (podvisorctl agent POD ps).
struct GuestInspection {
  struct Process {
    int32_t pid = 0;
    int32_t ppid = 0;
    std::string command;
    std::string container_id;  // empty: not in a container (the agent, kernel threads)
    uint64_t rss_bytes = 0;
    std::string state;
    uint32_t uid = 0;
  };
  struct Mount {
    std::string source, target, fs_type, options;
  };
  struct Disk {
    std::string name, serial;
    uint64_t size_bytes = 0;
    bool read_only = false;
    std::string mount_point;
  };
  std::vector<Process> processes;
  std::vector<Mount> mounts;
  std::vector<Disk> disks;
  bool truncated = false;  // the guest cut a list at its bound
};

// Something the guest reported on its own.
struct AgentEvent {
  enum class Kind { kProcessExited, kOom };
  Kind kind = Kind::kProcessExited;
  std::string container_id;
  std::string exec_id;  // empty: the container's init process
  ExitInfo exit;        // kProcessExited only
};

class AgentClient {
 public:
  struct Options {
    std::string host_version = "podvisord";
    // Connect() retries until this passes: QEMU binds the socket, the guest may still boot.
    absl::Duration connect_timeout = absl::Seconds(30);
    absl::Duration handshake_timeout = absl::Seconds(30);
    // A ping every interval; no frame at all from the guest for dead_after: disconnected (a
    // frozen guest is noticed within dead_after + interval; a closed socket at once). The
    // daemon sets dead_after from hypervisor.agent_dead_after_ms.
    absl::Duration heartbeat_interval = absl::Milliseconds(500);
    absl::Duration dead_after = absl::Milliseconds(1500);
    absl::Duration call_timeout = absl::Seconds(30);  // for calls without their own deadline
    // Called once, on the client's reader thread, when the channel is gone for good (EOF,
    // missed heartbeat, hostile frame, Close()). Must not call back into the client
    // synchronously except for non-blocking accessors.
    std::function<void(const absl::Status& why)> on_disconnect;
    // Called on the reader thread for each event. Must not block for long.
    std::function<void(const AgentEvent& event)> on_event;
  };

  // Connects to the unix socket at `socket_path` (retrying while it is absent or refuses) and
  // does the handshake.
  static absl::StatusOr<std::unique_ptr<AgentClient>> Connect(const std::string& socket_path,
                                                              Options options);
  // Takes ownership of a connected stream fd and does the handshake.
  static absl::StatusOr<std::unique_ptr<AgentClient>> Adopt(int fd, Options options);

  virtual ~AgentClient() = default;

  virtual const AgentInfo& info() const = 0;
  // False once the channel is gone.
  virtual bool connected() const = 0;
  // Closes the channel; pending calls fail with UNAVAILABLE. Idempotent.
  virtual void Close() = 0;

  // Round trip time of one ping.
  virtual absl::StatusOr<absl::Duration> Ping(absl::Duration timeout) = 0;
  virtual absl::Status SetupSandbox(const SandboxSetup& setup, absl::Duration timeout) = 0;
  virtual absl::Status SetupNetwork(const NetworkSetup& setup, absl::Duration timeout) = 0;
  // The agent acknowledges, then powers the VM off (or reboots); the channel then closes.
  virtual absl::Status Shutdown(bool reboot, absl::Duration grace, absl::Duration timeout) = 0;

  // Containers and processes (exec_id empty = the container's init process).
  // The identity the agent gave the init process (validated against what `spec` asked for);
  // nullopt when the agent is older than ContainerUser and did not say.
  virtual absl::StatusOr<std::optional<ContainerUser>> CreateContainer(const std::string& id,
                                                                       const ContainerSpec& spec,
                                                                       absl::Duration timeout) = 0;
  virtual absl::StatusOr<uint32_t> StartContainer(const std::string& id,
                                                  absl::Duration timeout) = 0;
  virtual absl::Status SignalProcess(const std::string& id, const std::string& exec_id,
                                     int signal, bool all, absl::Duration timeout) = 0;
  virtual absl::StatusOr<ExitInfo> WaitProcess(const std::string& id, const std::string& exec_id,
                                               absl::Duration timeout) = 0;
  // The same without holding a thread: `done` runs once, on the reader thread (or on the
  // calling thread when the channel is already closed). It must not block.
  using ExitCallback = std::function<void(absl::StatusOr<ExitInfo>)>;
  virtual void WaitProcessAsync(const std::string& id, const std::string& exec_id,
                                absl::Duration timeout, ExitCallback done) = 0;
  virtual absl::Status RemoveContainer(const std::string& id, bool force,
                                       absl::Duration timeout) = 0;
  virtual absl::StatusOr<uint32_t> ExecProcess(const std::string& id, const std::string& exec_id,
                                               const ProcessSpec& process,
                                               absl::Duration timeout) = 0;
  virtual absl::Status ResizeTty(const std::string& id, const std::string& exec_id, uint32_t rows,
                                 uint32_t cols, absl::Duration timeout) = 0;
  virtual absl::StatusOr<std::vector<GuestContainerStats>> Stats(
      const std::vector<std::string>& ids, absl::Duration timeout) = 0;
  // Every container's stats and the guest's totals.
  virtual absl::StatusOr<GuestSandboxStats> SandboxStats(absl::Duration timeout) = 0;
  // The guest's processes, mounts and disks. UNIMPLEMENTED from agents older than the call.
  virtual absl::StatusOr<GuestInspection> Inspect(absl::Duration timeout) = 0;
  // Every container the guest holds until it is removed (a restarted host reconciles them with
  // its records).
  virtual absl::StatusOr<std::vector<GuestContainer>> ListContainers(absl::Duration timeout) = 0;
  // Applies the set limits to a created or running container's cgroup (the rest stay as they
  // are). NOT_FOUND for an unknown container, FAILED_PRECONDITION once it exited,
  // INVALID_ARGUMENT when the guest kernel refuses a value.
  virtual absl::Status UpdateContainerResources(const std::string& id,
                                                const ContainerResources& resources,
                                                absl::Duration timeout) = 0;
  // The pod's limits on the guest's pod cgroup. INVALID_ARGUMENT when the guest kernel refuses a
  // value.
  virtual absl::Status UpdatePodResources(const PodLimits& limits, absl::Duration timeout) = 0;
  // Connects stream `stream_id` to TCP 127.0.0.1:port in the guest.
  // `window` non-zero: the guest sends at most that many bytes not yet acknowledged (AckStream,
  // offsets counted from the connection's first byte).
  virtual absl::Status PortForward(uint32_t port, uint32_t stream_id, absl::Duration timeout,
                                   uint32_t window = 0) = 0;
  virtual absl::StatusOr<std::string> DiskAttached(const std::string& serial,
                                                   const std::string& mount_point,
                                                   const std::string& fs_type, bool readonly,
                                                   absl::Duration timeout) = 0;
  virtual absl::Status DiskDetach(const std::string& serial, absl::Duration timeout) = 0;

  // Streams. Ids are allocated here; the callback gets the guest's bytes for that stream (on
  // the reader thread; a slow callback slows the whole channel).
  using StreamCallback = std::function<void(absl::string_view data, bool eof)>;
  virtual uint32_t AllocateStreamId() = 0;
  virtual void SetStreamCallback(uint32_t stream_id, StreamCallback callback) = 0;
  // Sends bytes (split into frames of at most 1 MiB) and/or EOF to the guest.
  virtual absl::Status WriteStream(uint32_t stream_id, absl::string_view data, bool eof) = 0;
  // Forgets the stream here and tells the guest to stop delivering it.
  virtual void CloseStream(uint32_t stream_id) = 0;
  // Output of a process created with acked_output or output_window (or of a port-forward with
  // a window): the first `offset` bytes of the stream are consumed for good (the guest may
  // release them).
  virtual absl::Status AckStream(uint32_t stream_id, uint64_t offset) = 0;
  // After a daemon restart: the container's init output (from the given offsets on, replaying
  // what was not acknowledged) and stdin go to new stream ids. UNIMPLEMENTED from old agents.
  virtual absl::StatusOr<OutputAttached> AttachOutput(const std::string& id,
                                                      const OutputAttach& attach,
                                                      absl::Duration timeout) = 0;
};

}  // namespace podvisor
