#include "pod-sandbox/container_controller.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/random.h"
#include "common/status_util.h"
#include "common/log.h"

namespace podvisor {
namespace {

// One level under /run: the agent creates the mount point but not its parents.
constexpr char kLayerMountDir[] = "/run/podvisor-layer-";
constexpr char kVolumeMountDir[] = "/run/podvisor-volume-";
constexpr uint32_t kFirstLayerIndex = 1;
constexpr uint32_t kMaxDiskIndex = 254;
constexpr absl::Duration kKillWait = absl::Seconds(10);
constexpr absl::Duration kNoExecLimit = absl::Hours(24 * 365);

const char* const kDefaultCaps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE"};

const char* const kAllCaps[] = {"CAP_CHOWN",
                                "CAP_DAC_OVERRIDE",
                                "CAP_DAC_READ_SEARCH",
                                "CAP_FOWNER",
                                "CAP_FSETID",
                                "CAP_KILL",
                                "CAP_SETGID",
                                "CAP_SETUID",
                                "CAP_SETPCAP",
                                "CAP_LINUX_IMMUTABLE",
                                "CAP_NET_BIND_SERVICE",
                                "CAP_NET_BROADCAST",
                                "CAP_NET_ADMIN",
                                "CAP_NET_RAW",
                                "CAP_IPC_LOCK",
                                "CAP_IPC_OWNER",
                                "CAP_SYS_MODULE",
                                "CAP_SYS_RAWIO",
                                "CAP_SYS_CHROOT",
                                "CAP_SYS_PTRACE",
                                "CAP_SYS_PACCT",
                                "CAP_SYS_ADMIN",
                                "CAP_SYS_BOOT",
                                "CAP_SYS_NICE",
                                "CAP_SYS_RESOURCE",
                                "CAP_SYS_TIME",
                                "CAP_SYS_TTY_CONFIG",
                                "CAP_MKNOD",
                                "CAP_LEASE",
                                "CAP_AUDIT_WRITE",
                                "CAP_AUDIT_CONTROL",
                                "CAP_SETFCAP",
                                "CAP_MAC_OVERRIDE",
                                "CAP_MAC_ADMIN",
                                "CAP_SYSLOG",
                                "CAP_WAKE_ALARM",
                                "CAP_BLOCK_SUSPEND",
                                "CAP_AUDIT_READ",
                                "CAP_PERFMON",
                                "CAP_BPF",
                                "CAP_CHECKPOINT_RESTORE"};

const char* const kDefaultMaskedPaths[] = {
    "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi",          "/sys/firmware"};
const char* const kDefaultReadonlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                             "/proc/sysrq-trigger"};

// Files the agent writes in the guest for the whole pod; kubelet's mounts of its own copies map
// to these.
const char* const kGuestPodFiles[] = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"};

bool IsGuestPodFile(const std::string& container_path) {
  return std::any_of(std::begin(kGuestPodFiles), std::end(kGuestPodFiles),
                     [&](const char* f) { return container_path == f; });
}

std::string CapName(const std::string& cap) {
  std::string upper = absl::AsciiStrToUpper(cap);
  if (upper == "ALL" || absl::StartsWith(upper, "CAP_")) return upper;
  return absl::StrCat("CAP_", upper);
}

// The serial of a new layer disk: 13 hex digits of the layer image's name (its diff id) and 6
// random ones, [a-z0-9], 20 characters. A layer detached and attached again gets a new serial, so
// the guest cannot mistake the old device, still going away, for the new one.
std::string LayerSerial(const std::string& path) {
  std::string base = path.substr(path.find_last_of('/') + 1);
  std::string hex;
  for (char c : base) {
    if (absl::ascii_isxdigit(static_cast<unsigned char>(c))) hex.push_back(c);
  }
  if (hex.size() >= 64) hex = hex.substr(hex.size() - 64);  // the hash itself
  hex.resize(13, '0');
  return absl::StrCat("l", hex, RandomHex(3));
}

// An image's StopSignal ("SIGQUIT", "QUIT", "3"); SIGTERM when absent or unknown.
int ParseSignal(const std::string& name) {
  static const std::pair<const char*, int> kSignals[] = {
      {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH},
      {"STOP", SIGSTOP}, {"PWR", SIGPWR}};
  int n = 0;
  if (absl::SimpleAtoi(name, &n) && n > 0 && n < 65) return n;
  std::string upper = absl::AsciiStrToUpper(name);
  if (absl::StartsWith(upper, "SIG")) upper = upper.substr(3);
  for (const auto& [sig_name, number] : kSignals) {
    if (upper == sig_name) return number;
  }
  if (absl::StartsWith(upper, "RTMIN+") && absl::SimpleAtoi(upper.substr(6), &n)) {
    return SIGRTMIN + n;
  }
  return SIGTERM;
}

// Asks the agent to mount a disk just hot-plugged. The guest may list the disk (its serial in
// sysfs) a moment before the block device can be opened (mount: ENXIO), so a failure is retried
// for a few seconds; a mount that failed left nothing behind.
absl::StatusOr<std::string> MountDisk(AgentClient& agent, const std::string& serial,
                                      const std::string& mount_point, absl::Duration timeout) {
  absl::StatusOr<std::string> device;
  absl::Duration backoff = absl::Milliseconds(100);
  for (int attempt = 0; attempt < 6; ++attempt) {
    device = agent.DiskAttached(serial, mount_point, "erofs", true, timeout);
    // Not found: the agent already waited for the disk (10 s); unavailable: the channel is gone.
    if (device.ok() || absl::IsInvalidArgument(device.status()) ||
        absl::IsUnavailable(device.status()) || absl::IsNotFound(device.status()) ||
        absl::IsDeadlineExceeded(device.status())) {
      return device;
    }
    PV_LOG(kDebug) << "disk " << serial << " not mountable yet: " << device.status();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
  return device;
}

}  // namespace

ProcessSpec BuildProcess(const ContainerConfig& config, const ImageMetadata& image) {
  ProcessSpec p;
  if (!config.command.empty()) {
    p.args = config.command;
    p.args.insert(p.args.end(), config.args.begin(), config.args.end());
  } else {
    p.args = image.config.entrypoint;
    const std::vector<std::string>& rest = config.args.empty() ? image.config.cmd : config.args;
    p.args.insert(p.args.end(), rest.begin(), rest.end());
  }
  p.env = image.config.env;
  for (const auto& [key, value] : config.envs) {
    std::string entry = absl::StrCat(key, "=", value);
    auto it = std::find_if(p.env.begin(), p.env.end(), [&](const std::string& e) {
      return absl::StartsWith(e, absl::StrCat(key, "="));
    });
    if (it != p.env.end()) {
      *it = entry;
    } else {
      p.env.push_back(entry);
    }
  }
  p.cwd = !config.working_dir.empty()         ? config.working_dir
          : !image.config.working_dir.empty() ? image.config.working_dir
                                              : "/";
  // User: the CRI security context over the image's User ("uid", "name", "uid:gid").
  std::string image_group;
  if (size_t colon = image.config.user.find(':'); colon != std::string::npos) {
    image_group = image.config.user.substr(colon + 1);
  }
  if (config.run_as_user) {
    p.user.uid = static_cast<uint32_t>(*config.run_as_user);
  } else if (!config.run_as_username.empty()) {
    p.user.username = config.run_as_username;
  } else if (image.uid >= 0) {
    p.user.uid = static_cast<uint32_t>(image.uid);
  } else if (!image.username.empty()) {
    p.user.username = image.username;
  } else {
    p.user.uid = 0;
  }
  uint32_t gid = 0;
  if (config.run_as_group) {
    p.user.gid = static_cast<uint32_t>(*config.run_as_group);
  } else if (!config.run_as_user && config.run_as_username.empty() &&
             absl::SimpleAtoi(image_group, &gid)) {
    p.user.gid = gid;
  } else {
    p.user.gid_from_passwd = true;  // the user's primary group, as containerd and runc give it
  }
  for (int64_t g : config.supplemental_groups) {
    p.user.additional_gids.push_back(static_cast<uint32_t>(g));
  }
  p.terminal = config.tty;
  p.no_new_privileges = config.no_new_privs;
  return p;
}

ContainerResources ToGuestResources(const ContainerLimits& r) {
  ContainerResources out;
  out.cpu_shares = r.cpu_shares > 0 ? static_cast<uint64_t>(r.cpu_shares) : 0;
  out.cpu_quota = r.cpu_quota;
  out.cpu_period = r.cpu_period > 0 ? static_cast<uint64_t>(r.cpu_period) : 0;
  out.cpuset_cpus = r.cpuset_cpus;
  out.cpuset_mems = r.cpuset_mems;
  out.memory_limit_bytes = r.memory_limit_bytes;
  out.memory_swap_limit_bytes = r.memory_swap_limit_bytes;
  out.hugepage_limits = r.hugepage_limits;
  out.unified = r.unified;
  if (r.oom_score_adj != 0) out.oom_score_adj = static_cast<int32_t>(r.oom_score_adj);
  return out;
}

std::vector<std::string> BuildCapabilities(const ContainerConfig& config) {
  std::set<std::string> caps(std::begin(kDefaultCaps), std::end(kDefaultCaps));
  for (const std::string& c : config.cap_add) {
    std::string name = CapName(c);
    if (name == "ALL") {
      caps.insert(std::begin(kAllCaps), std::end(kAllCaps));
    } else {
      caps.insert(name);
    }
  }
  for (const std::string& c : config.cap_drop) {
    std::string name = CapName(c);
    if (name == "ALL") {
      caps.clear();
    } else {
      caps.erase(name);
    }
  }
  // An explicit add wins over "drop ALL", as in containerd.
  bool dropped_all = std::any_of(config.cap_drop.begin(), config.cap_drop.end(),
                                 [](const std::string& c) { return CapName(c) == "ALL"; });
  if (dropped_all) {
    for (const std::string& c : config.cap_add) {
      if (CapName(c) != "ALL") caps.insert(CapName(c));
    }
  }
  return std::vector<std::string>(caps.begin(), caps.end());
}

namespace {

// Acknowledge output to the guest once this much more of a stream is in the log file: well under
// the 1 MiB the guest holds per stream, so it never waits for an acknowledgement, and rare enough
// to cost nothing. (A restart resumes from the position file, not from the acknowledgements.)
constexpr uint64_t kAckEvery = 256 * 1024;

// Where a container's output position file lives: with the sandbox's host-side files.
std::string OutputPositionPath(const std::string& sandbox_state_dir, const std::string& id) {
  return absl::StrCat(sandbox_state_dir, "/output-", id, ".pos");
}

}  // namespace

// The live side of a container in this daemon: where its output goes.
// Attachers see the output next to the log writer; the consumer list and the EOF flags have their
// own lock (taken on the agent's reader thread).
//
// Output positions: bytes of each stream are numbered from the container's first byte. A stream's
// `committed` position is what is in the log file for good (received minus the writer's pending
// partial line). The position file holds six little-endian u64: the committed positions of
// stdout and stderr, the positions once the write under way is done, and that write's log file
// inode and file size after it (0 when no write is under way). It is written just before each log
// write (one write(2) per chunk) and again after it, so a daemon killed at any point can tell
// from the log file's size whether that write happened. Committed positions are acknowledged to
// the guest, which may then release those bytes. A daemon that restarts re-attaches from the
// positions in that file, so the guest replays exactly what the log is missing.
struct ContainerController::Runtime {
  std::shared_ptr<AgentClient> agent;
  std::shared_ptr<ContainerLogWriter> log;
  std::vector<uint32_t> streams;
  uint32_t stdin_stream = 0;
  uint32_t output_stream[2] = {0, 0};  // by LogStream
  int position_fd = -1;

  // Stream callbacks run on the agent's reader thread one at a time; the lock is for
  // ShiftReceived.
  std::mutex positions_mu;
  uint64_t received[2] = {0, 0};
  uint64_t committed[2] = {0, 0};
  uint64_t acked[2] = {0, 0};

  ~Runtime() {
    if (position_fd >= 0) ::close(position_fd);
  }

  static constexpr size_t kRecordBytes = 48;

  void WriteRecord(const uint64_t before[2], const uint64_t after[2], uint64_t inode,
                   uint64_t size_after) {
    if (position_fd < 0) return;
    const uint64_t v[6] = {before[0], before[1], after[0], after[1], inode, size_after};
    unsigned char buf[kRecordBytes];
    for (size_t k = 0; k < kRecordBytes; ++k) {
      buf[k] = static_cast<unsigned char>(v[k / 8] >> (8 * (k % 8)));
    }
    (void)!::pwrite(position_fd, buf, sizeof buf, 0);
  }

  void OnOutput(LogStream which, absl::string_view data, bool end) {
    const int i = which == LogStream::kStdout ? 0 : 1;
    std::unique_lock<std::mutex> lock(positions_mu);
    received[i] += data.size();
    const uint64_t old = committed[i];
    if (log) {
      auto before = [&](uint64_t inode, uint64_t size_after, size_t pending) {
        uint64_t after[2] = {committed[0], committed[1]};
        after[i] = received[i] - pending;
        WriteRecord(committed, after, inode, size_after);
      };
      const absl::Time now = absl::Now();
      if (!data.empty()) (void)log->Write(which, data, now, before);
      if (end) (void)log->CloseStream(which, now, before);
    }
    committed[i] = received[i] - (log ? log->Pending(which) : 0);
    if (committed[i] != old) WriteRecord(committed, committed, 0, 0);
    if (agent && output_stream[i] != 0 && !end && committed[i] - acked[i] >= kAckEvery) {
      if (agent->AckStream(output_stream[i], committed[i]).ok()) acked[i] = committed[i];
    }
    lock.unlock();
    Deliver(which, data, end);
  }

  // Reads the positions a previous daemon left (zero when there are none). When it died with a
  // write under way, the log file says whether that write happened.
  static void ReadPositions(int fd, const std::string& log_path, uint64_t out[2]) {
    unsigned char buf[kRecordBytes] = {};
    out[0] = out[1] = 0;
    if (::pread(fd, buf, sizeof buf, 0) != static_cast<ssize_t>(sizeof buf)) return;
    uint64_t v[6] = {};
    for (size_t k = 0; k < kRecordBytes; ++k) v[k / 8] |= uint64_t{buf[k]} << (8 * (k % 8));
    out[0] = v[0];
    out[1] = v[1];
    struct stat st;
    if (v[4] != 0 && !log_path.empty() && ::stat(log_path.c_str(), &st) == 0 &&
        static_cast<uint64_t>(st.st_ino) == v[4] && static_cast<uint64_t>(st.st_size) >= v[5]) {
      out[0] = v[2];
      out[1] = v[3];
    }
  }

  std::mutex consumers_mu;
  std::map<uint64_t, OutputConsumer> consumers;
  uint64_t next_consumer = 1;
  bool eof[2] = {false, false};  // by LogStream

  // A restarted daemon learns where the guest really resumed only after bytes may have come.
  void ShiftReceived(int i, uint64_t by) {
    std::lock_guard<std::mutex> lock(positions_mu);
    received[i] += by;
  }

  void Deliver(LogStream which, absl::string_view data, bool end) {
    std::vector<OutputConsumer> targets;
    {
      std::lock_guard<std::mutex> lock(consumers_mu);
      if (end) eof[which == LogStream::kStdout ? 0 : 1] = true;
      for (auto& [handle, consumer] : consumers) targets.push_back(consumer);
    }
    for (OutputConsumer& c : targets) c(which, data, end);
  }
};

ContainerController::ContainerController(ContainerControllerOptions options,
                                         ContainerStore* containers, SandboxStore* sandboxes,
                                         SandboxController* sandbox_controller,
                                         Hypervisor* hypervisor, ImageController* images)
    : options_(std::move(options)),
      containers_(containers),
      sandboxes_(sandboxes),
      sandbox_controller_(sandbox_controller),
      hypervisor_(hypervisor),
      images_(images) {}

ContainerController::~ContainerController() = default;

void ContainerController::Install() {
  SandboxHooks hooks;
  hooks.on_agent_event = [this](const std::string& sandbox_id, const AgentEvent& event) {
    OnAgentEvent(sandbox_id, event);
  };
  hooks.on_stopped = [this](const std::string& sandbox_id) { OnSandboxStopped(sandbox_id); };
  hooks.before_remove = [this](const std::string& sandbox_id) {
    return OnSandboxRemoving(sandbox_id);
  };
  sandbox_controller_->SetHooks(std::move(hooks));
  if (images_) {
    images_->SetInUseCheck([this](const std::string& image_id) { return ImageInUse(image_id); });
  }
}

absl::Status ContainerController::Recover() {
  for (const Container& c : containers_->List()) {
    absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(c.metadata.sandbox_id);
    if (c.status.state == ContainerState::kExited) {
      // It may have ended while no daemon listened (its exit event can even arrive before this
      // runs): the guest still holds the output this daemon did not log. Nothing is replayed
      // for containers whose output is all in the log.
      if (sandbox.ok() && sandbox->status.state == SandboxState::kReady &&
          std::filesystem::exists(OutputPositionPath(sandbox->metadata.state_dir, c.metadata.id))) {
        if (absl::Status s = ReattachOutput(c, *sandbox); !s.ok()) {
          PV_LOG(kDebug) << "container " << ShortId(c.metadata.id) << ": " << s;
        }
      }
      continue;
    }
    if (!sandbox.ok() || sandbox->status.state != SandboxState::kReady) {
      ExitInfo exit;
      exit.exit_code = c.status.state == ContainerState::kRunning ? 137 : 0;
      MarkExited(c.metadata.id, exit, "the pod sandbox is not running");
      continue;
    }
    // The container lives on in its pod VM; its output streams belonged to the previous daemon.
    if (absl::Status s = ReattachOutput(c, *sandbox); !s.ok()) {
      PV_LOG(kWarning) << "container " << ShortId(c.metadata.id)
                       << ": running from before the restart; its further output is not logged: "
                       << s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ContainerController::Runtime>> ContainerController::NewRuntime(
    const ContainerMetadata& meta, const std::string& sandbox_state_dir,
    const std::shared_ptr<AgentClient>& agent, bool fresh) {
  auto runtime = std::make_shared<Runtime>();
  runtime->agent = agent;
  if (!meta.log_path.empty()) {
    std::string dir = meta.log_path.substr(0, meta.log_path.find_last_of('/'));
    if (!dir.empty()) {
      if (absl::Status s = EnsureDirs(dir); !s.ok()) return s;  // never chmods an existing one
    }
    absl::StatusOr<std::unique_ptr<ContainerLogWriter>> log =
        ContainerLogWriter::Open(meta.log_path);
    if (!log.ok()) return log.status();
    runtime->log = std::move(*log);
  }
  if (!sandbox_state_dir.empty()) {
    const std::string path = OutputPositionPath(sandbox_state_dir, meta.id);
    runtime->position_fd =
        ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0600);
    if (runtime->position_fd < 0) {
      // Output is logged all the same; only a daemon restart would log some of it twice.
      PV_LOG(kWarning) << ErrnoStatus(absl::StrCat("open ", path), errno);
    }
  }
  auto connect = [&](LogStream which) {
    uint32_t stream = agent->AllocateStreamId();
    std::weak_ptr<Runtime> weak = runtime;
    agent->SetStreamCallback(stream, [weak, which](absl::string_view data, bool eof) {
      if (std::shared_ptr<Runtime> rt = weak.lock()) rt->OnOutput(which, data, eof);
    });
    runtime->streams.push_back(stream);
    runtime->output_stream[which == LogStream::kStdout ? 0 : 1] = stream;
  };
  connect(LogStream::kStdout);
  if (!meta.config.tty) connect(LogStream::kStderr);
  if (meta.config.stdin) {
    runtime->stdin_stream = agent->AllocateStreamId();
    runtime->streams.push_back(runtime->stdin_stream);
  }
  return runtime;
}

absl::Status ContainerController::ReattachOutput(const Container& c, const Sandbox& sandbox) {
  const std::string& id = c.metadata.id;
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_controller_->Agent(sandbox.metadata.id);
  if (!agent.ok()) return agent.status();
  absl::StatusOr<std::shared_ptr<Runtime>> made =
      NewRuntime(c.metadata, sandbox.metadata.state_dir, *agent, false);
  if (!made.ok()) return made.status();
  std::shared_ptr<Runtime> runtime = *made;
  uint64_t positions[2] = {0, 0};
  if (runtime->position_fd >= 0) {
    Runtime::ReadPositions(runtime->position_fd, c.metadata.log_path, positions);
  }
  for (int i = 0; i < 2; ++i) {
    runtime->received[i] = runtime->committed[i] = runtime->acked[i] = positions[i];
  }
  OutputAttach attach;
  attach.stdout_stream = runtime->output_stream[0];
  attach.stderr_stream = runtime->output_stream[1];
  attach.stdin_stream = runtime->stdin_stream;
  attach.stdout_offset = positions[0];
  attach.stderr_offset = positions[1];
  {
    // Registered first: the replay may come before the answer.
    absl::MutexLock lock(&mu_);
    runtimes_[id] = runtime;
  }
  absl::StatusOr<OutputAttached> attached =
      (*agent)->AttachOutput(id, attach, options_.agent_call_timeout);
  if (!attached.ok()) {
    DropRuntime(id);
    return attached.status();
  }
  const uint64_t starts[2] = {attached->stdout_offset, attached->stderr_offset};
  for (int i = 0; i < 2; ++i) {
    if (runtime->output_stream[i] == 0 || starts[i] <= positions[i]) continue;
    PV_LOG(kWarning) << "container " << ShortId(id) << ": " << (starts[i] - positions[i])
                     << " bytes of " << (i == 0 ? "stdout" : "stderr")
                     << " were released by the guest before this daemon logged them";
    runtime->ShiftReceived(i, starts[i] - positions[i]);
  }
  if (c.status.state == ContainerState::kRunning) {
    // The exit event of a process that ended while no daemon listened may be gone: ask.
    const std::string sandbox_id = sandbox.metadata.id;
    (*agent)->WaitProcessAsync(id, "", kNoExecLimit,
                               [this, id, sandbox_id](absl::StatusOr<ExitInfo> exit) {
                                 if (!exit.ok()) return;
                                 AgentEvent e;
                                 e.container_id = id;
                                 e.exit = *exit;
                                 OnAgentEvent(sandbox_id, e);
                               });
  }
  PV_LOG(kInfo) << "container " << ShortId(id) << ": output re-attached at stdout " << starts[0]
                << ", stderr " << starts[1] << (attached->exited ? " (exited)" : "");
  return absl::OkStatus();
}

std::shared_ptr<std::mutex> ContainerController::LockFor(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto& l = locks_[id];
  if (!l) l = std::make_shared<std::mutex>();
  return l;
}

std::shared_ptr<std::mutex> ContainerController::SandboxLockFor(const std::string& sandbox_id) {
  absl::MutexLock lock(&mu_);
  auto& l = sandbox_locks_[sandbox_id];
  if (!l) l = std::make_shared<std::mutex>();
  return l;
}

absl::StatusOr<std::string> ContainerController::ResolveId(const std::string& id_or_prefix) const {
  return containers_->Resolve(id_or_prefix);
}

absl::StatusOr<std::vector<LayerDisk>> ContainerController::AttachLayers(
    const std::string& sandbox_id, AgentClient& agent, const std::vector<std::string>& paths) {
  // What the sandbox's other containers already attached (the caller holds the sandbox lock).
  std::map<std::string, LayerDisk> attached;  // by layer image path
  std::set<uint32_t> used;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id) continue;
    for (const LayerDisk& d : c.metadata.layers) {
      attached[d.path] = d;
      used.insert(d.index);
    }
    for (const VolumeDisk& v : c.metadata.volumes) used.insert(v.disk.index);
  }
  // SCSI targets rotate through the free ones, so that a target just unplugged (which the guest
  // may still be tearing down) is not the next one used.
  uint32_t cursor;
  {
    absl::MutexLock lock(&mu_);
    cursor = next_disk_index_[sandbox_id];
  }
  std::vector<LayerDisk> out;
  std::vector<LayerDisk> added;
  auto undo = absl::MakeCleanup([&] {
    for (const LayerDisk& d : added) {
      (void)agent.DiskDetach(d.serial, options_.agent_call_timeout);
      (void)hypervisor_->DetachDisk(sandbox_id, d.serial);
    }
  });
  for (const std::string& path : paths) {
    LayerDisk disk;
    disk.serial = LayerSerial(path);
    disk.path = path;
    if (auto it = attached.find(path); it != attached.end()) {
      out.push_back(it->second);
      continue;
    }
    std::optional<uint32_t> index;
    const uint32_t slots = kMaxDiskIndex - kFirstLayerIndex + 1;
    for (uint32_t i = 0; i < slots && !index; ++i) {
      uint32_t candidate = kFirstLayerIndex + (cursor + i) % slots;
      if (!used.contains(candidate)) index = candidate;
    }
    if (!index) {
      return absl::ResourceExhaustedError("the pod VM has no free disk slot for another layer");
    }
    cursor = *index - kFirstLayerIndex + 1;
    const uint32_t slot = *index;
    disk.index = slot;
    VmDisk vm_disk;
    vm_disk.id = disk.serial;
    vm_disk.path = path;
    vm_disk.read_only = true;
    vm_disk.index = slot;
    if (absl::Status s = hypervisor_->AttachDisk(sandbox_id, vm_disk); !s.ok()) {
      return WithContext(s, absl::StrCat("attach layer ", path));
    }
    added.push_back(disk);
    used.insert(slot);
    attached[path] = disk;
    absl::StatusOr<std::string> device = MountDisk(
        agent, disk.serial, absl::StrCat(kLayerMountDir, disk.serial), options_.agent_call_timeout);
    if (!device.ok()) return WithContext(device.status(), absl::StrCat("mount layer ", path));
    out.push_back(disk);
  }
  std::move(undo).Cancel();
  absl::MutexLock lock(&mu_);
  next_disk_index_[sandbox_id] = cursor;
  return out;
}

absl::StatusOr<std::vector<VolumeDisk>> ContainerController::AttachVolumes(
    const Sandbox& sandbox, AgentClient& agent, const std::string& container_id,
    const ContainerConfig& config, const std::vector<LayerDisk>& layers) {
  std::vector<VolumeDisk> out;
  std::set<uint32_t> used;
  for (const LayerDisk& d : layers) used.insert(d.index);
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox.metadata.id) continue;
    for (const LayerDisk& d : c.metadata.layers) used.insert(d.index);
    for (const VolumeDisk& v : c.metadata.volumes) used.insert(v.disk.index);
  }
  if (!sandbox.metadata.shared_dir.empty()) return out;  // volumes go through the shared dir
  auto undo = absl::MakeCleanup([&] { DetachVolumes(sandbox.metadata.id, out); });
  const std::string dir = absl::StrCat(sandbox.metadata.state_dir, "/volumes");
  for (const ContainerMount& m : config.mounts) {
    if (!m.readonly || m.host_path.empty()) continue;
    if (IsGuestPodFile(m.container_path)) continue;
    std::error_code ec;
    const std::filesystem::file_status st = std::filesystem::status(m.host_path, ec);
    if (ec || (!std::filesystem::is_directory(st) && !std::filesystem::is_regular_file(st))) {
      return absl::InvalidArgumentError(
          absl::StrCat("mount of ", m.host_path, " at ", m.container_path,
                       ": not a directory or regular file on the host"));
    }
    if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
    VolumeDisk v;
    v.container_path = m.container_path;
    v.disk.serial = absl::StrCat("v", RandomHex(9));
    v.disk.path = absl::StrCat(dir, "/", ShortId(container_id), "-", v.disk.serial, ".erofs");
    std::string source = m.host_path;
    std::string staging;
    if (std::filesystem::is_regular_file(st)) {
      // One file: an image holding just that file.
      staging = absl::StrCat(v.disk.path, ".d");
      v.file = std::filesystem::path(m.host_path).filename().string();
      std::filesystem::create_directories(staging, ec);
      std::filesystem::copy_file(m.host_path, absl::StrCat(staging, "/", v.file),
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (ec) {
        return absl::InternalError(absl::StrCat("copy ", m.host_path, ": ", ec.message()));
      }
      source = staging;
    }
    absl::Status built = BuildErofsImage(source, v.disk.path);
    if (!staging.empty()) std::filesystem::remove_all(staging, ec);
    if (!built.ok()) return WithContext(built, absl::StrCat("snapshot of ", m.host_path));
    uint32_t index = kFirstLayerIndex;
    {
      absl::MutexLock lock(&mu_);
      uint32_t& cursor = next_disk_index_[sandbox.metadata.id];
      const uint32_t slots = kMaxDiskIndex - kFirstLayerIndex + 1;
      bool found = false;
      for (uint32_t i = 0; i < slots && !found; ++i) {
        uint32_t candidate = kFirstLayerIndex + (cursor + i) % slots;
        if (!used.contains(candidate)) {
          index = candidate;
          found = true;
        }
      }
      if (!found) {
        (void)RemoveAll(v.disk.path);
        return absl::ResourceExhaustedError("the pod VM has no free disk slot for a volume");
      }
      cursor = index - kFirstLayerIndex + 1;
    }
    v.disk.index = index;
    used.insert(index);
    VmDisk vm_disk;
    vm_disk.id = v.disk.serial;
    vm_disk.path = v.disk.path;
    vm_disk.read_only = true;
    vm_disk.index = index;
    if (absl::Status s = hypervisor_->AttachDisk(sandbox.metadata.id, vm_disk); !s.ok()) {
      (void)RemoveAll(v.disk.path);
      return WithContext(s, absl::StrCat("attach volume ", m.host_path));
    }
    out.push_back(v);
    absl::StatusOr<std::string> device =
        MountDisk(agent, v.disk.serial, absl::StrCat(kVolumeMountDir, v.disk.serial),
                  options_.agent_call_timeout);
    if (!device.ok())
      return WithContext(device.status(), absl::StrCat("mount volume ", m.host_path));
  }
  std::move(undo).Cancel();
  return out;
}

absl::StatusOr<std::vector<SharedVolume>> ContainerController::AttachSharedVolumes(
    const Sandbox& sandbox, const std::string& container_id, const ContainerConfig& config) {
  std::vector<SharedVolume> out;
  const std::string& shared_dir = sandbox.metadata.shared_dir;
  if (shared_dir.empty()) return out;
  const std::string dir = absl::StrCat(shared_dir, "/", container_id);
  auto undo = absl::MakeCleanup([&] { (void)DetachSharedVolumes(shared_dir, container_id); });
  for (const ContainerMount& m : config.mounts) {
    if (m.host_path.empty()) continue;
    if (IsGuestPodFile(m.container_path)) continue;
    const std::string what = absl::StrCat("mount of ", m.host_path, " at ", m.container_path);
    if (m.host_path[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the host path must be absolute"));
    }
    struct stat st {};
    if (::stat(m.host_path.c_str(), &st) != 0) {
      if (errno != ENOENT) return ErrnoStatus(absl::StrCat(what, ": stat"), errno);
      // As containerd does: a missing host path becomes a directory.
      if (absl::Status s = MakeDirs(m.host_path); !s.ok()) return WithContext(s, what);
      if (::stat(m.host_path.c_str(), &st) != 0) {
        return ErrnoStatus(absl::StrCat(what, ": stat"), errno);
      }
    }
    const bool is_dir = S_ISDIR(st.st_mode);
    if (!is_dir && !S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": only directories and regular files can be shared with a pod VM (sockets, "
                "devices and fifos of the host cannot be reached from inside it)"));
    }
    if (out.empty()) {
      if (absl::Status s = MakeDirs(dir, 0711); !s.ok()) return WithContext(s, what);
    }
    SharedVolume v;
    v.container_path = m.container_path;
    v.host_path = m.host_path;
    v.name = absl::StrCat(container_id, "/", out.size());
    v.readonly = m.readonly;
    const std::string target = absl::StrCat(shared_dir, "/", v.name);
    if (is_dir) {
      if (::mkdir(target.c_str(), 0755) != 0) return ErrnoStatus("mkdir " + target, errno);
    } else {
      int fd = ::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return ErrnoStatus("create " + target, errno);
      ::close(fd);
    }
    out.push_back(v);
    if (::mount(m.host_path.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": bind mount"), errno);
    }
    // HostToContainer: mounts made later under the host path reach the container (a slave of
    // the host path's peer group when it is shared); private: none do.
    const unsigned long propagation =
        m.propagation == MountPropagation::kHostToContainer ? MS_SLAVE : MS_PRIVATE;
    if (::mount(nullptr, target.c_str(), nullptr, MS_REC | propagation, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": set propagation"), errno);
    }
    if (m.readonly && ::mount(nullptr, target.c_str(), nullptr,
                              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                              nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": read-only remount"), errno);
    }
  }
  std::move(undo).Cancel();
  return out;
}

absl::Status ContainerController::DetachSharedVolumes(const std::string& shared_dir,
                                                      const std::string& container_id) {
  if (shared_dir.empty() || container_id.empty()) return absl::OkStatus();
  // RemoveAll unmounts first and never deletes through a mount: the host data stays.
  return RemoveAll(absl::StrCat(shared_dir, "/", container_id));
}

void ContainerController::DetachVolumes(const std::string& sandbox_id,
                                        const std::vector<VolumeDisk>& volumes) {
  if (volumes.empty()) return;
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_controller_->Agent(sandbox_id);
  for (const VolumeDisk& v : volumes) {
    if (agent.ok()) {
      absl::Status s = (*agent)->DiskDetach(v.disk.serial, options_.agent_call_timeout);
      if (!s.ok()) {
        PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": unmount volume "
                         << v.disk.serial << ": " << s;
        continue;
      }
      (void)hypervisor_->DetachDisk(sandbox_id, v.disk.serial);
    }
    (void)RemoveAll(v.disk.path);  // the VM keeps an open file; the disk space goes with it
  }
}

void ContainerController::DetachUnusedLayers(const std::string& sandbox_id,
                                             const std::vector<LayerDisk>& layers,
                                             const std::string& removed_id) {
  if (layers.empty()) return;
  std::set<std::string> still_used;
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id || c.metadata.id == removed_id) continue;
    for (const LayerDisk& d : c.metadata.layers) still_used.insert(d.serial);
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_controller_->Agent(sandbox_id);
  if (!agent.ok()) return;  // the VM is gone or going: its disks go with it
  for (const LayerDisk& d : layers) {
    if (still_used.contains(d.serial)) continue;
    if (absl::Status s = (*agent)->DiskDetach(d.serial, options_.agent_call_timeout); !s.ok()) {
      PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": unmount layer " << d.serial
                       << ": " << s;
      continue;  // still mounted in the guest: leave the disk where it is
    }
    if (absl::Status s = hypervisor_->DetachDisk(sandbox_id, d.serial); !s.ok()) {
      PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id) << ": detach layer " << d.serial << ": "
                       << s;
    }
  }
}

absl::StatusOr<ContainerSpec> ContainerController::BuildSpec(
    const Sandbox& sandbox, const ImageRecord& image, const ContainerConfig& config,
    const std::vector<LayerDisk>& layers, const std::vector<VolumeDisk>& volumes,
    const std::vector<SharedVolume>& shared) const {
  ContainerSpec spec;
  spec.process = BuildProcess(config, image.metadata);
  if (spec.process.args.empty()) {
    return absl::InvalidArgumentError(
        "no command: neither the container config nor the image says what to run");
  }
  if (!config.privileged) {
    spec.process.capabilities = BuildCapabilities(config);
    const std::set<std::string> caps(spec.process.capabilities.begin(),
                                     spec.process.capabilities.end());
    absl::StatusOr<std::string> seccomp = SeccompProfileJson(config.seccomp, caps);
    if (!seccomp.ok()) return seccomp.status();
    spec.seccomp_oci_json = *seccomp;
  }
  std::vector<std::string> lowers;
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    lowers.push_back(absl::StrCat(kLayerMountDir, it->serial));
  }
  if (lowers.empty()) return absl::FailedPreconditionError("the image has no layers");
  spec.rootfs_mount = GuestMount{
      "/", "overlay", "overlay", {absl::StrCat("lowerdir=", absl::StrJoin(lowers, ":"))}};
  spec.readonly_rootfs = config.readonly_rootfs;
  for (const ContainerMount& m : config.mounts) {
    if (IsGuestPodFile(m.container_path)) {
      spec.mounts.push_back(GuestMount{m.container_path,
                                       "bind",
                                       m.container_path,
                                       {"rbind", "rprivate", m.readonly ? "ro" : "rw"}});
      continue;
    }
    auto shared_volume = std::find_if(shared.begin(), shared.end(), [&](const SharedVolume& v) {
      return v.container_path == m.container_path && v.host_path == m.host_path;
    });
    if (shared_volume != shared.end()) {
      spec.mounts.push_back(GuestMount{m.container_path,
                                       "bind",
                                       absl::StrCat(kGuestSharedDir, "/", shared_volume->name),
                                       {"rbind", "rprivate", m.readonly ? "ro" : "rw"}});
      continue;
    }
    auto volume = std::find_if(volumes.begin(), volumes.end(), [&](const VolumeDisk& v) {
      return v.container_path == m.container_path;
    });
    if (volume != volumes.end()) {
      std::string source = absl::StrCat(kVolumeMountDir, volume->disk.serial);
      if (!volume->file.empty()) absl::StrAppend(&source, "/", volume->file);
      spec.mounts.push_back(GuestMount{m.container_path, "bind", source, {"rbind", "ro"}});
      continue;
    }
    if (m.container_path == "/dev/termination-log") {
      // kubelet's termination message file in a VM without a shared directory: the container
      // writes into its own rootfs instead (the host file stays empty, as with a container that
      // wrote no message).
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "writable mount of host path ", m.host_path, " at ", m.container_path,
        " is not supported: this pod VM shares no filesystem with the host "
        "(hypervisor.shared_filesystem is off; read-only mounts are given as snapshots)"));
  }
  // As containerd and CRI-O do, every container sees the pod's hostname, hosts and (when the pod
  // has a DNS config) resolv.conf, unless kubelet mounted its own: the guest's copies, which the
  // agent wrote at sandbox setup.
  for (const char* file : kGuestPodFiles) {
    const bool mounted = std::any_of(spec.mounts.begin(), spec.mounts.end(),
                                     [&](const GuestMount& g) { return g.destination == file; });
    if (mounted) continue;
    if (std::string_view(file) == "/etc/resolv.conf" && !sandbox.metadata.dns) continue;
    spec.mounts.push_back(GuestMount{
        file, "bind", file, {"rbind", "rprivate", config.readonly_rootfs ? "ro" : "rw"}});
  }
  // No hostname in the spec: UTS is the VM's own, shared by the pod.
  if (config.masked_paths.empty()) {
    spec.masked_paths.assign(std::begin(kDefaultMaskedPaths), std::end(kDefaultMaskedPaths));
  } else {
    spec.masked_paths = config.masked_paths;
  }
  if (config.readonly_paths.empty()) {
    spec.readonly_paths.assign(std::begin(kDefaultReadonlyPaths), std::end(kDefaultReadonlyPaths));
  } else {
    spec.readonly_paths = config.readonly_paths;
  }
  spec.resources = ToGuestResources(config.resources);
  spec.privileged = config.privileged;
  spec.share_pid_namespace = config.share_pod_pid;
  return spec;
}

absl::StatusOr<std::string> ContainerController::Create(const std::string& sandbox_id_or_prefix,
                                                        const ContainerConfig& config) {
  if (config.name.empty()) return absl::InvalidArgumentError("container name is required");
  if (config.image.empty()) return absl::InvalidArgumentError("image is required");
  if (absl::Status s = ValidateLimits(config.resources); !s.ok()) {
    return WithContext(s, "create container: resources");
  }
  if (config.run_as_group && !config.run_as_user && config.run_as_username.empty()) {
    // A group for the image's user would silently pair with whatever user the image names.
    return absl::InvalidArgumentError(
        "security_context.run_as_group is set without run_as_user or run_as_username");
  }
  absl::StatusOr<std::string> sandbox_id = sandboxes_->Resolve(sandbox_id_or_prefix);
  if (!sandbox_id.ok()) return sandbox_id.status();
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*sandbox_id);
  if (!sandbox.ok()) return sandbox.status();
  const SandboxMetadata& sm = sandbox->metadata;
  const std::string name =
      ContainerName(config.name, sm.pod_name, sm.pod_namespace, sm.pod_uid, config.attempt);
  const std::string context = absl::StrCat("create container ", name);
  for (const Container& c : containers_->List()) {
    if (c.metadata.name == name) {
      return absl::AlreadyExistsError(
          absl::StrCat(context, ": the name is reserved by ", c.metadata.id));
    }
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_controller_->Agent(*sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  absl::StatusOr<ImageRecord> image = images_->Get(config.image);
  if (!image.ok()) return WithContext(image.status(), context);
  absl::StatusOr<std::vector<std::string>> layer_paths = images_->LayerImages(image->metadata.id);
  if (!layer_paths.ok()) return WithContext(layer_paths.status(), context);

  Container c;
  ContainerMetadata& meta = c.metadata;
  meta.id = NewObjectId();
  meta.name = name;
  meta.sandbox_id = *sandbox_id;
  meta.config = config;
  meta.image_id = image->metadata.id;
  meta.image_ref = DigestedReference(*image, config.image);
  if (!config.log_path.empty()) {
    meta.log_path = (config.log_path[0] == '/' || sm.log_directory.empty())
                        ? config.log_path
                        : absl::StrCat(sm.log_directory, "/", config.log_path);
  }
  meta.created_at_ns = absl::ToUnixNanos(absl::Now());
  c.status.state = ContainerState::kCreated;
  c.status.resources = config.resources;

  auto sandbox_lock = SandboxLockFor(*sandbox_id);
  std::lock_guard<std::mutex> guard(*sandbox_lock);
  absl::StatusOr<std::vector<LayerDisk>> layers = AttachLayers(*sandbox_id, **agent, *layer_paths);
  if (!layers.ok()) return WithContext(layers.status(), context);
  meta.layers = *layers;
  auto detach = absl::MakeCleanup([&] { DetachUnusedLayers(*sandbox_id, meta.layers, meta.id); });

  absl::StatusOr<std::vector<VolumeDisk>> volumes =
      AttachVolumes(*sandbox, **agent, meta.id, config, meta.layers);
  if (!volumes.ok()) return WithContext(volumes.status(), context);
  meta.volumes = *volumes;
  auto detach_volumes = absl::MakeCleanup([&] { DetachVolumes(*sandbox_id, meta.volumes); });
  absl::StatusOr<std::vector<SharedVolume>> shared = AttachSharedVolumes(*sandbox, meta.id, config);
  if (!shared.ok()) return WithContext(shared.status(), context);
  meta.shared_volumes = *shared;
  auto detach_shared = absl::MakeCleanup(
      [&] { (void)DetachSharedVolumes(sm.shared_dir, meta.id); });

  absl::StatusOr<ContainerSpec> spec =
      BuildSpec(*sandbox, *image, config, meta.layers, meta.volumes, meta.shared_volumes);
  if (!spec.ok()) return WithContext(spec.status(), context);
  meta.env = spec->process.env;
  meta.cwd = spec->process.cwd;
  meta.uid = spec->process.user.uid;
  meta.gid = spec->process.user.gid;
  meta.username = spec->process.user.username;
  meta.stop_signal = ParseSignal(image->metadata.config.stop_signal);

  // Output: the log file, fed by the container's stdio streams.
  absl::StatusOr<std::shared_ptr<Runtime>> made = NewRuntime(meta, sm.state_dir, *agent, true);
  if (!made.ok()) return WithContext(made.status(), context);
  std::shared_ptr<Runtime> runtime = *made;
  spec->process.stdout_stream = runtime->output_stream[0];
  spec->process.stderr_stream = runtime->output_stream[1];
  spec->process.stdin_stream = runtime->stdin_stream;
  spec->process.acked_output = true;
  auto close_streams = absl::MakeCleanup([&] {
    for (uint32_t s : runtime->streams) (*agent)->CloseStream(s);
  });

  if (absl::Status s = (*agent)->CreateContainer(meta.id, *spec, options_.agent_call_timeout);
      !s.ok()) {
    return WithContext(s, context);
  }
  auto remove_guest = absl::MakeCleanup(
      [&] { (void)(*agent)->RemoveContainer(meta.id, true, options_.agent_call_timeout); });
  {
    absl::MutexLock lock(&mu_);
    runtimes_[meta.id] = runtime;
  }
  if (absl::Status s = containers_->Add(c); !s.ok()) {
    DropRuntime(meta.id);
    return WithContext(s, context);
  }
  std::move(remove_guest).Cancel();
  std::move(close_streams).Cancel();
  std::move(detach_shared).Cancel();
  std::move(detach_volumes).Cancel();
  std::move(detach).Cancel();
  PV_LOG(kInfo) << "container " << ShortId(meta.id) << " (" << name << ") created in sandbox "
                << ShortId(*sandbox_id);
  return meta.id;
}

absl::Status ContainerController::Start(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  const std::string context = absl::StrCat("start container ", ShortId(*id));
  if (c->status.state != ContainerState::kCreated) {
    return absl::FailedPreconditionError(absl::StrCat(
        context, ": it is ", nlohmann::json(c->status.state).get<std::string>(), ", not created"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_controller_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  const int64_t started = absl::ToUnixNanos(absl::Now());
  absl::StatusOr<uint32_t> pid = (*agent)->StartContainer(*id, options_.agent_call_timeout);
  if (!pid.ok()) {
    ExitInfo exit;
    exit.exit_code = 128;
    MarkExited(*id, exit, absl::StrCat("start failed: ", pid.status().message()));
    return WithContext(pid.status(), absl::StrCat(context, ": agent"));
  }
  auto updated = containers_->Update(*id, [&](ContainerStatus& st) {
    if (st.started_at_ns == 0) st.started_at_ns = started;
    st.pid = *pid;
    // A quick process may have exited (and been reported) already.
    if (st.state == ContainerState::kCreated) st.state = ContainerState::kRunning;
    return absl::OkStatus();
  });
  if (!updated.ok()) return WithContext(updated.status(), context);
  PV_LOG(kInfo) << "container " << ShortId(*id) << " started (guest pid " << *pid << ")";
  return absl::OkStatus();
}

void ContainerController::MarkExited(const std::string& id, const ExitInfo& exit,
                                     const std::string& message) {
  const int64_t now = absl::ToUnixNanos(absl::Now());
  auto updated = containers_->Update(id, [&](ContainerStatus& st) {
    if (st.state == ContainerState::kExited) return absl::CancelledError("already exited");
    st.state = ContainerState::kExited;
    if (st.started_at_ns == 0 && st.pid != 0) st.started_at_ns = now;
    st.finished_at_ns = now;
    st.exit_code = ExitCodeOf(exit);
    st.reason = exit.oom_killed ? "OOMKilled" : st.exit_code == 0 ? "Completed" : "Error";
    st.message = message;
    return absl::OkStatus();
  });
  if (updated.ok()) {
    PV_LOG(kInfo) << "container " << ShortId(id) << " exited with " << updated->status.exit_code
                  << (exit.oom_killed ? " (OOM killed)" : "");
  }
}

void ContainerController::OnAgentEvent(const std::string& sandbox_id, const AgentEvent& event) {
  if (event.kind != AgentEvent::Kind::kProcessExited || !event.exec_id.empty()) return;
  absl::StatusOr<Container> c = containers_->Get(event.container_id);
  // The guest only speaks for its own containers.
  if (!c.ok() || c->metadata.sandbox_id != sandbox_id) return;
  MarkExited(event.container_id, event.exit, "");
}

absl::Status ContainerController::Stop(const std::string& id_or_prefix, absl::Duration timeout) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (absl::IsNotFound(c.status())) return absl::OkStatus();
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kRunning) return absl::OkStatus();
  const std::string context = absl::StrCat("stop container ", ShortId(*id));
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_controller_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) {
    ExitInfo exit;
    exit.exit_code = 137;
    MarkExited(*id, exit, "the pod sandbox is not running");
    return absl::OkStatus();
  }
  absl::StatusOr<ExitInfo> exit = absl::DeadlineExceededError("not waited");
  if (timeout > absl::ZeroDuration()) {
    absl::Status s = (*agent)->SignalProcess(*id, "", c->metadata.stop_signal, false,
                                             options_.agent_call_timeout);
    if (s.ok()) exit = (*agent)->WaitProcess(*id, "", timeout);
  }
  if (!exit.ok()) {
    absl::Status s = (*agent)->SignalProcess(*id, "", SIGKILL, true, options_.agent_call_timeout);
    if (!s.ok()) PV_LOG(kDebug) << context << ": SIGKILL: " << s;
    exit = (*agent)->WaitProcess(*id, "", kKillWait);
    if (!exit.ok())
      return WithContext(exit.status(), absl::StrCat(context, ": wait after SIGKILL"));
  }
  MarkExited(*id, *exit, "");
  return absl::OkStatus();
}

void ContainerController::DropRuntime(const std::string& id) {
  std::shared_ptr<Runtime> runtime;
  {
    absl::MutexLock lock(&mu_);
    auto it = runtimes_.find(id);
    if (it == runtimes_.end()) return;
    runtime = std::move(it->second);
    runtimes_.erase(it);
  }
  if (runtime->agent) {
    for (uint32_t s : runtime->streams) runtime->agent->CloseStream(s);
  }
  // Attachers still connected see the end of the output.
  runtime->Deliver(LogStream::kStdout, "", true);
  runtime->Deliver(LogStream::kStderr, "", true);
}

absl::Status ContainerController::RemoveLocked(const Container& c) {
  const std::string& id = c.metadata.id;
  const std::string context = absl::StrCat("remove container ", ShortId(id));
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_controller_->Agent(c.metadata.sandbox_id);
  if (agent.ok()) {
    if (absl::Status s = (*agent)->RemoveContainer(id, true, options_.agent_call_timeout);
        !s.ok()) {
      return WithContext(s, absl::StrCat(context, ": agent"));
    }
  }
  DropRuntime(id);
  if (absl::StatusOr<Sandbox> sb = sandboxes_->Get(c.metadata.sandbox_id); sb.ok()) {
    ::unlink(OutputPositionPath(sb->metadata.state_dir, id).c_str());
  }
  auto sandbox_lock = SandboxLockFor(c.metadata.sandbox_id);
  std::lock_guard<std::mutex> guard(*sandbox_lock);
  if (absl::Status s = containers_->Remove(id); !s.ok()) return WithContext(s, context);
  DetachVolumes(c.metadata.sandbox_id, c.metadata.volumes);
  if (!c.metadata.shared_volumes.empty()) {
    if (absl::StatusOr<Sandbox> sb = sandboxes_->Get(c.metadata.sandbox_id); sb.ok()) {
      if (absl::Status s = DetachSharedVolumes(sb->metadata.shared_dir, id); !s.ok()) {
        PV_LOG(kWarning) << context << ": shared volumes: " << s;
      }
    }
  }
  DetachUnusedLayers(c.metadata.sandbox_id, c.metadata.layers, id);
  return absl::OkStatus();
}

absl::Status ContainerController::Remove(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  if (absl::Status s = Stop(*id, absl::ZeroDuration()); !s.ok()) return s;
  {
    auto lock = LockFor(*id);
    std::lock_guard<std::mutex> guard(*lock);
    absl::StatusOr<Container> c = containers_->Get(*id);
    if (absl::IsNotFound(c.status())) return absl::OkStatus();
    if (!c.ok()) return c.status();
    if (absl::Status s = RemoveLocked(*c); !s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  locks_.erase(*id);
  PV_LOG(kInfo) << "container " << ShortId(*id) << " removed";
  return absl::OkStatus();
}

void ContainerController::OnSandboxStopped(const std::string& sandbox_id) {
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id || c.status.state == ContainerState::kExited) continue;
    ExitInfo exit;
    exit.exit_code = 137;
    MarkExited(c.metadata.id, exit, "the pod sandbox stopped");
    DropRuntime(c.metadata.id);
  }
}

absl::Status ContainerController::OnSandboxRemoving(const std::string& sandbox_id) {
  for (const Container& c : containers_->List()) {
    if (c.metadata.sandbox_id != sandbox_id) continue;
    DropRuntime(c.metadata.id);
    if (absl::Status s = containers_->Remove(c.metadata.id); !s.ok()) return s;
    absl::MutexLock l(&mu_);
    locks_.erase(c.metadata.id);
  }
  absl::MutexLock l(&mu_);
  sandbox_locks_.erase(sandbox_id);
  next_disk_index_.erase(sandbox_id);
  last_vm_cpu_.erase(sandbox_id);
  return absl::OkStatus();
}

absl::StatusOr<Container> ContainerController::Inspect(const std::string& id_or_prefix) const {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  return containers_->Get(*id);
}

std::vector<Container> ContainerController::List(const ContainerFilter& filter) const {
  std::vector<Container> out;
  for (Container& c : containers_->List()) {
    if (ContainerMatches(c, filter)) out.push_back(std::move(c));
  }
  return out;
}

bool ContainerController::ImageInUse(const std::string& image_id) const {
  for (const Container& c : containers_->List()) {
    if (c.metadata.image_id == image_id) return true;
  }
  return false;
}

absl::StatusOr<ExecSyncResult> ContainerController::ExecSync(const std::string& id_or_prefix,
                                                             const std::vector<std::string>& cmd,
                                                             absl::Duration timeout) {
  if (cmd.empty()) return absl::InvalidArgumentError("exec: cmd is required");
  // The same checks and process settings as a streamed exec.
  absl::StatusOr<ExecTarget> target = PrepareExec(id_or_prefix);
  if (!target.ok()) return target.status();
  const std::string& id = target->container_id;
  AgentClient* agent = target->agent.get();
  const std::string context = absl::StrCat("exec in container ", ShortId(id));

  struct Output {
    std::mutex mu;
    std::condition_variable cv;
    std::string data[2];
    bool eof[2] = {false, false};
  };
  auto output = std::make_shared<Output>();
  const size_t limit = options_.exec_output_limit;
  uint32_t streams[2];
  for (int i = 0; i < 2; ++i) {
    streams[i] = agent->AllocateStreamId();
    agent->SetStreamCallback(streams[i], [output, i, limit](absl::string_view data, bool eof) {
      std::lock_guard<std::mutex> lock(output->mu);
      std::string& buf = output->data[i];
      if (buf.size() < limit) buf.append(data.data(), std::min(data.size(), limit - buf.size()));
      if (eof) {
        output->eof[i] = true;
        output->cv.notify_all();
      }
    });
  }
  auto close = absl::MakeCleanup([&] {
    for (uint32_t s : streams) agent->CloseStream(s);
  });
  ProcessSpec& p = target->process;
  p.args = cmd;
  p.stdout_stream = streams[0];
  p.stderr_stream = streams[1];
  const std::string exec_id = absl::StrCat("exec-", RandomHex(8));
  absl::StatusOr<uint32_t> pid =
      agent->ExecProcess(id, exec_id, p, options_.agent_call_timeout);
  if (!pid.ok()) return WithContext(pid.status(), absl::StrCat(context, ": agent"));
  const absl::Duration limit_time = timeout > absl::ZeroDuration() ? timeout : kNoExecLimit;
  absl::StatusOr<ExitInfo> exit = agent->WaitProcess(id, exec_id, limit_time);
  if (!exit.ok()) {
    (void)agent->SignalProcess(id, exec_id, SIGKILL, false, options_.agent_call_timeout);
    if (absl::IsDeadlineExceeded(exit.status())) {
      return absl::DeadlineExceededError(
          absl::StrCat(context, ": command timed out after ", absl::FormatDuration(timeout)));
    }
    return WithContext(exit.status(), absl::StrCat(context, ": wait"));
  }
  ExecSyncResult result;
  {
    std::unique_lock<std::mutex> lock(output->mu);
    output->cv.wait_for(lock, absl::ToChronoMilliseconds(options_.output_drain_timeout),
                        [&] { return output->eof[0] && output->eof[1]; });
    result.stdout_data = output->data[0];
    result.stderr_data = output->data[1];
  }
  result.exit_code = ExitCodeOf(*exit);
  return result;
}

absl::StatusOr<ExecTarget> ContainerController::PrepareExec(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  const std::string context = absl::StrCat("exec in container ", ShortId(*id));
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat(context, ": it is not running"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_controller_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  ExecTarget t;
  t.container_id = *id;
  t.agent = *agent;
  ProcessSpec& p = t.process;
  p.env = c->metadata.env;
  p.cwd = c->metadata.cwd.empty() ? "/" : c->metadata.cwd;
  p.user.uid = c->metadata.uid;
  p.user.gid = c->metadata.gid;
  p.user.username = c->metadata.username;
  // As BuildProcess decided at create: a gid of 0 not asked for was the passwd's to choose.
  p.user.gid_from_passwd = !c->metadata.config.run_as_group && c->metadata.gid == 0;
  for (int64_t g : c->metadata.config.supplemental_groups) {
    p.user.additional_gids.push_back(static_cast<uint32_t>(g));
  }
  p.no_new_privileges = c->metadata.config.no_new_privs;
  if (!c->metadata.config.privileged) p.capabilities = BuildCapabilities(c->metadata.config);
  t.tty = c->metadata.config.tty;
  t.stdin = c->metadata.config.stdin;
  t.stdin_once = c->metadata.config.stdin_once;
  return t;
}

absl::StatusOr<uint64_t> ContainerController::AddOutputConsumer(const std::string& id,
                                                                OutputConsumer consumer) {
  std::shared_ptr<Runtime> runtime;
  {
    absl::MutexLock lock(&mu_);
    auto it = runtimes_.find(id);
    if (it != runtimes_.end()) runtime = it->second;
  }
  if (!runtime) {
    return absl::FailedPreconditionError(absl::StrCat(
        "attach to container ", ShortId(id), ": its output is not handled by this daemon"));
  }
  uint64_t handle;
  bool eof[2];
  {
    std::lock_guard<std::mutex> lock(runtime->consumers_mu);
    handle = runtime->next_consumer++;
    runtime->consumers[handle] = consumer;
    eof[0] = runtime->eof[0];
    eof[1] = runtime->eof[1];
  }
  if (eof[0]) consumer(LogStream::kStdout, "", true);
  if (eof[1]) consumer(LogStream::kStderr, "", true);
  return handle;
}

void ContainerController::RemoveOutputConsumer(const std::string& id, uint64_t handle) {
  std::shared_ptr<Runtime> runtime;
  {
    absl::MutexLock lock(&mu_);
    auto it = runtimes_.find(id);
    if (it != runtimes_.end()) runtime = it->second;
  }
  if (!runtime) return;
  std::lock_guard<std::mutex> lock(runtime->consumers_mu);
  runtime->consumers.erase(handle);
}

absl::Status ContainerController::WriteStdin(const std::string& id, absl::string_view data,
                                             bool eof) {
  std::shared_ptr<Runtime> runtime;
  {
    absl::MutexLock lock(&mu_);
    auto it = runtimes_.find(id);
    if (it != runtimes_.end()) runtime = it->second;
  }
  if (!runtime || !runtime->agent || runtime->stdin_stream == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", ShortId(id), " was not created with stdin"));
  }
  return runtime->agent->WriteStream(runtime->stdin_stream, data, eof);
}

absl::Status ContainerController::ReopenLog(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("reopen log of container ", ShortId(*id), ": it is not running"));
  }
  std::shared_ptr<Runtime> runtime;
  {
    absl::MutexLock lock(&mu_);
    auto it = runtimes_.find(*id);
    if (it != runtimes_.end()) runtime = it->second;
  }
  if (!runtime || !runtime->log) {
    return absl::FailedPreconditionError(absl::StrCat("reopen log of container ", ShortId(*id),
                                                      ": its output is not logged by this daemon"));
  }
  return runtime->log->Reopen();
}

absl::StatusOr<ContainerStatsInfo> ContainerController::Stats(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  ContainerFilter filter;
  filter.id_prefix = *id;
  std::vector<ContainerStatsInfo> all = ListStats(filter);
  for (ContainerStatsInfo& s : all) {
    if (s.container.metadata.id == *id) return std::move(s);
  }
  return absl::NotFoundError(absl::StrCat("container ", *id, " not found"));
}

std::vector<ContainerStatsInfo> ContainerController::ListStats(const ContainerFilter& filter) {
  std::vector<ContainerStatsInfo> out;
  std::map<std::string, std::vector<size_t>> running_by_sandbox;
  for (Container& c : List(filter)) {
    if (c.status.state == ContainerState::kRunning) {
      running_by_sandbox[c.metadata.sandbox_id].push_back(out.size());
    }
    ContainerStatsInfo info;
    info.container = std::move(c);
    info.stats.container_id = info.container.metadata.id;
    info.stats.timestamp_ns = absl::ToUnixNanos(absl::Now());
    out.push_back(std::move(info));
  }
  for (const auto& [sandbox_id, indexes] : running_by_sandbox) {
    absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_controller_->Agent(sandbox_id);
    if (!agent.ok()) continue;
    std::vector<std::string> ids;
    for (size_t i : indexes) ids.push_back(out[i].container.metadata.id);
    absl::StatusOr<std::vector<GuestContainerStats>> stats =
        (*agent)->Stats(ids, options_.agent_call_timeout);
    if (!stats.ok()) {
      PV_LOG(kDebug) << "sandbox " << ShortId(sandbox_id) << ": stats: " << stats.status();
      continue;
    }
    for (const GuestContainerStats& s : *stats) {
      for (size_t i : indexes) {
        if (out[i].container.metadata.id == s.container_id) {
          out[i].stats = s;
          out[i].stats.timestamp_ns = absl::ToUnixNanos(absl::Now());
        }
      }
    }
  }
  return out;
}

absl::Status ContainerController::UpdateResources(const std::string& id_or_prefix,
                                                  const ContainerLimits& update) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  const std::string context = absl::StrCat("update resources of container ", ShortId(*id));
  if (absl::Status s = ValidateLimits(update); !s.ok()) return WithContext(s, context);
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Container> c = containers_->Get(*id);
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kCreated && c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat(context, ": it is ", nlohmann::json(c->status.state).get<std::string>(),
                     "; only a created or running container can be updated"));
  }
  const ContainerLimits merged = MergeLimits(c->status.resources, update);
  if (absl::Status s = ValidateLimits(merged); !s.ok()) {
    return WithContext(s, absl::StrCat(context, ": with the current limits"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent =
      sandbox_controller_->Agent(c->metadata.sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  // The guest cgroup of a created container exists already (crun create): it starts with these.
  if (absl::Status s = (*agent)->UpdateContainerResources(*id, ToGuestResources(update),
                                                          options_.agent_call_timeout);
      !s.ok()) {
    return WithContext(s, absl::StrCat(context, ": agent"));
  }
  auto updated = containers_->Update(*id, [&](ContainerStatus& st) {
    st.resources = merged;
    return absl::OkStatus();
  });
  if (!updated.ok()) return WithContext(updated.status(), context);
  PV_LOG(kInfo) << "container " << ShortId(*id) << ": resources updated";
  return absl::OkStatus();
}

absl::StatusOr<SandboxStatsInfo> ContainerController::SandboxStatsOf(const Sandbox& sandbox) {
  const std::string& id = sandbox.metadata.id;
  absl::StatusOr<VmHostStats> host = sandbox_controller_->HostStats(id);
  if (!host.ok()) {
    return absl::UnavailableError(
        absl::StrCat("stats of sandbox ", ShortId(id), ": ", host.status().message()));
  }
  SandboxStatsInfo info;
  info.sandbox = sandbox;
  info.host = std::move(*host);
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_controller_->Agent(id);
  if (agent.ok()) {
    absl::StatusOr<GuestSandboxStats> guest = (*agent)->SandboxStats(options_.agent_call_timeout);
    if (guest.ok()) {
      guest->timestamp_ns = absl::ToUnixNanos(absl::Now());
      info.guest = std::move(*guest);
    } else {
      PV_LOG(kDebug) << "sandbox " << ShortId(id) << ": guest stats: " << guest.status();
    }
  }
  ContainerFilter filter;
  filter.sandbox_id_prefix = id;
  for (Container& c : List(filter)) {
    if (c.metadata.sandbox_id != id) continue;
    ContainerStatsInfo s;
    s.container = std::move(c);
    s.stats.container_id = s.container.metadata.id;
    s.stats.timestamp_ns = info.host.timestamp_ns;
    if (info.guest && s.container.status.state == ContainerState::kRunning) {
      for (const GuestContainerStats& g : info.guest->containers) {
        if (g.container_id != s.stats.container_id) continue;
        s.stats = g;
        s.stats.timestamp_ns = info.guest->timestamp_ns;
      }
    }
    info.containers.push_back(std::move(s));
  }
  if (info.host.vm) {
    absl::MutexLock lock(&mu_);
    auto& last = last_vm_cpu_[id];
    const int64_t dt = info.host.timestamp_ns - last.first;
    if (last.first > 0 && dt > 0 && info.host.vm->cpu_ns >= last.second) {
      info.vm_nano_cores = static_cast<uint64_t>(
          static_cast<double>(info.host.vm->cpu_ns - last.second) * 1e9 / static_cast<double>(dt));
    }
    last = {info.host.timestamp_ns, info.host.vm->cpu_ns};
  }
  return info;
}

absl::StatusOr<SandboxStatsInfo> ContainerController::SandboxStats(
    const std::string& sandbox_id_or_prefix) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(sandbox_id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
  if (!sandbox.ok()) return sandbox.status();
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::UnavailableError(
        absl::StrCat("stats of sandbox ", ShortId(*id), ": it is not ready (its VM is stopped)"));
  }
  return SandboxStatsOf(*sandbox);
}

std::vector<SandboxStatsInfo> ContainerController::ListSandboxStats(const SandboxFilter& filter) {
  SandboxFilter ready = filter;
  ready.state = SandboxState::kReady;
  std::vector<SandboxStatsInfo> out;
  for (const Sandbox& s : sandbox_controller_->List(ready)) {
    absl::StatusOr<SandboxStatsInfo> info = SandboxStatsOf(s);
    if (info.ok()) {
      out.push_back(std::move(*info));
    } else {
      // Stopped meanwhile: left out, as a sandbox that is not ready is.
      PV_LOG(kDebug) << info.status();
    }
  }
  return out;
}

}  // namespace podvisor
