#include "cri/daemon.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/log.h"
#include "cri/admin_server.h"
#include "cri/config_reload.h"
#include "cri/metrics_endpoint.h"
#include "cri/runtime_service.h"
#include "cri/vm_templates.h"
#include "host-runtime/host_runtime.h"
#include "host-runtime/host_streaming.h"
#include "hypervisor/capability_probes.h"
#include "hypervisor/hypervisor.h"
#include "image/image_service.h"
#include "network/pod_network.h"
#include "nlohmann/json.hpp"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_streaming.h"
#include "pod-sandbox/runtime_handler.h"
#include "pod-sandbox/sandbox_controller.h"
#include "pod-sandbox/seccomp.h"
#include "store/store.h"

namespace podvisor {
namespace {

// kubelet's own limit for CRI messages.
constexpr int kMaxMessageBytes = 16 * 1024 * 1024;
constexpr absl::Duration kShutdownGrace = absl::Seconds(10);
// How soon a host container's exit becomes a STOPPED event.
constexpr absl::Duration kHostExitWatch = absl::Milliseconds(200);

// An exclusive flock on <root>/podvisord.lock, held for the daemon's life.
absl::StatusOr<int> LockRoot(const std::string& root_dir) {
  const std::string path = absl::StrCat(root_dir, "/podvisord.lock");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string pid = n > 0 ? std::string(absl::StripAsciiWhitespace(buf)) : "unknown";
      return absl::FailedPreconditionError(
          absl::StrCat("another podvisord (pid ", pid, ") is running on root directory ", root_dir));
    }
    return ErrnoStatus(absl::StrCat("lock ", path), err);
  }
  std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    PV_LOG(kWarning) << "cannot record pid in " << path << ": " << std::strerror(errno);
  }
  return fd;
}

// True when something accepts connections on the unix socket at `path`.
bool SocketIsLive(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return live;
}

absl::Status PrepareSocket(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", path));
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (absl::Status s = MakeDirs(dir, 0755); !s.ok()) return s;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  if (SocketIsLive(path)) {
    return absl::FailedPreconditionError(
        absl::StrCat("another server is listening on ", path));
  }
  PV_LOG(kInfo) << "removing stale socket " << path;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("remove stale socket ", path), errno);
  }
  return absl::OkStatus();
}

class DaemonImpl : public Daemon {
 public:
  ~DaemonImpl() override {
    Shutdown();
    admin_.reset();
    {
      absl::MutexLock lock(&live_mu_);
      metrics_.reset();
    }
    if (init_thread_.joinable()) {
      if (hypervisor_) hypervisor_->CancelInit();  // a probe boot (KVM: seconds) stops waiting
      // A start-up still connecting to libvirt waits on its capability probe (seconds): end the
      // probe, so that neither the stop waits nor its QEMU outlives the daemon (Init then fails).
      // libvirt probes one emulator after another, so until the start-up is over.
      while (!probe_root_.empty() && !init_done_.load()) {
        KillCapabilityProbes(probe_root_, false);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      init_thread_.join();
    }
    if (sandbox_controller_) sandbox_controller_->Detach();
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  absl::Status Init(const Config& config) {
    services_.config = config;
    if (absl::Status s = MakeDirs(config.root_dir, 0711); !s.ok()) return s;
    if (absl::Status s = MakeDirs(config.state_dir, 0711); !s.ok()) return s;
    absl::StatusOr<int> lock = LockRoot(config.root_dir);
    if (!lock.ok()) return lock.status();
    lock_fd_ = *lock;

    socket_path_ = UnixSocketPath(config.listen);
    if (absl::Status s = PrepareSocket(socket_path_); !s.ok()) return s;

    auto records = RecordStore::Open(absl::StrCat(config.root_dir, "/podvisor.db"));
    if (!records.ok()) return records.status();
    records_ = std::move(*records);
    if (absl::Status s = LoadStores(); !s.ok()) return s;
    if (absl::Status s = StartOperatorEndpoints(config); !s.ok()) return s;
    if (absl::Status s = Serve(); !s.ok()) return s;
    // The hypervisor's first connection probes QEMU for seconds: serve meanwhile (RuntimeReady
    // stays false and sandbox calls wait) rather than keep kubelet from the socket.
    init_thread_ = std::thread([this] { InitRuntime(); });
    return absl::OkStatus();
  }

  void Shutdown() override {
    if (!server_) return;
    if (sandbox_controller_) sandbox_controller_->Detach();
    PV_LOG(kInfo) << "shutting down: no new calls, finishing in-flight calls";
    events_.Close();  // event streams end now rather than at the grace deadline
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoSeconds(kShutdownGrace));
    server_->Wait();
    server_.reset();
    // After the gRPC server: no handler hands out URLs any more. Ends every session.
    if (streaming_server_) streaming_server_->Stop();
    ::unlink(socket_path_.c_str());
    PV_LOG(kInfo) << "podvisord stopped; pods keep running";
  }

  void Reload(const Config& next) override {
    absl::MutexLock lock(&live_mu_);
    const Config running = live_config_;
    std::vector<std::string> changed = cri::ChangedKeys(running, next);
    if (changed.empty()) {
      PV_LOG(kInfo) << "config reloaded: nothing changed";
      return;
    }
    Config applied = cri::ApplyLiveKeys(running, next);
    std::vector<std::string> live, restart;
    for (const std::string& key : changed) (cri::IsLiveKey(key) ? live : restart).push_back(key);
    if (next.log_level != running.log_level) SetLogLevel(ParseLogLevel(next.log_level));
    if (ConfigToJson(next)["registry"]["hosts"] != ConfigToJson(running)["registry"]["hosts"]) {
      image_controller_->SetRegistryConfig(applied.registry);
    }
    if (next.metrics.address != running.metrics.address) {
      if (absl::Status s = MoveMetrics(next.metrics.address); !s.ok()) {
        PV_LOG(kError) << "config reload: metrics.address stays " << running.metrics.address
                       << ": " << s.message();
        applied.metrics.address = running.metrics.address;
      }
    }
    live_config_ = applied;
    if (!live.empty()) {
      PV_LOG(kInfo) << "config reloaded: applied " << absl::StrJoin(live, ", ");
    }
    for (const std::string& key : restart) {
      PV_LOG(kWarning) << "config reload: " << key << " changed; it takes effect after a restart";
    }
  }

 private:
  // Prometheus metrics and the admin socket: what an operator looks at.
  absl::Status StartOperatorEndpoints(const Config& config) {
    {
      absl::MutexLock lock(&live_mu_);
      live_config_ = config;
      if (!config.metrics.address.empty()) {
        if (absl::Status s = MoveMetrics(config.metrics.address); !s.ok()) return s;
      }
    }
    services_.effective_config = [this] {
      absl::MutexLock lock(&live_mu_);
      return ConfigToJson(live_config_);
    };
    services_.metrics_url = [this] {
      absl::MutexLock lock(&live_mu_);
      return metrics_ ? metrics_->Url() : std::string();
    };
    cri::AdminContext context{sandbox_controller_.get(), container_controller_.get(),
                              services_.effective_config, templates_.get()};
    auto admin = cri::AdminServer::Start(absl::StrCat(config.state_dir, "/admin.sock"), context);
    if (!admin.ok()) return admin.status();
    admin_ = std::move(*admin);
    return absl::OkStatus();
  }

  // Serves metrics on `address` instead (empty: not at all). The old endpoint goes first, so the
  // same port can be bound again; on failure nothing serves and the error says why.
  absl::Status MoveMetrics(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(live_mu_) {
    const std::string old = metrics_ ? metrics_->address() : "";
    metrics_.reset();
    if (address.empty()) {
      if (!old.empty()) {
        PV_LOG(kInfo) << "metrics endpoint on " << old << " stopped";
      }
      return absl::OkStatus();
    }
    auto endpoint = cri::MetricsEndpoint::Start(address, sandbox_controller_.get(),
                                                container_controller_.get(), templates_.get());
    if (!endpoint.ok()) {
      if (!old.empty()) {
        auto back = cri::MetricsEndpoint::Start(old, sandbox_controller_.get(),
                                                container_controller_.get(), templates_.get());
        if (back.ok()) metrics_ = std::move(*back);
      }
      return endpoint.status();
    }
    metrics_ = std::move(*endpoint);
    PV_LOG(kInfo) << "metrics on " << metrics_->Url();
    return absl::OkStatus();
  }

  absl::Status LoadStores() {
    const Config& config = services_.config;
    sandbox_store_ = std::make_unique<SandboxStore>(records_.get(), "sandbox");
    std::vector<std::string> skipped;
    if (absl::Status s = sandbox_store_->Load(&skipped); !s.ok()) return s;
    for (const std::string& why : skipped) PV_LOG(kError) << "unreadable record skipped: " << why;
    events_.Watch(sandbox_store_.get(), false);
    services_.events = &events_;

    const std::string guest_dir = ExecutableDir() + "/../guest";
    LibvirtHypervisorOptions hv;
    hv.uri = config.hypervisor.libvirt_uri;
    hv.embed_root = absl::StrCat(config.state_dir, "/libvirt");
    if (hv.uri.empty()) probe_root_ = hv.embed_root;
    hv.accelerator = config.hypervisor.accel;
    hv.kernel = config.hypervisor.kernel.empty() ? guest_dir + "/vmlinux" : config.hypervisor.kernel;
    hv.initrd =
        config.hypervisor.initrd.empty() ? guest_dir + "/initrd.img" : config.hypervisor.initrd;
    hv.virtiofsd = config.hypervisor.virtiofsd;
    hv.qemu_sandbox = config.hypervisor.qemu_sandbox;
    hv.guest_mitigations = config.hypervisor.guest_mitigations;
    hv.console_log_max_bytes = config.hypervisor.console_log_max_bytes;
    // Durable: a restart (or a reboot into the same kernel) skips the seconds of the KVM probe.
    if (absl::Status s = MakeDirs(absl::StrCat(config.root_dir, "/hypervisor"), 0700); !s.ok()) {
      return s;
    }
    hv.probe_cache_path = absl::StrCat(config.root_dir, "/hypervisor/kvm-probe");
    if (config.hypervisor.shared_filesystem && ::access(hv.virtiofsd.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "hypervisor.virtiofsd: ", hv.virtiofsd,
          " is not an executable (it comes with qemu-system-common); set "
          "hypervisor.shared_filesystem: false to run pods without shared volumes"));
    }
    auto hypervisor = NewLibvirtHypervisor(hv);
    if (!hypervisor.ok()) return hypervisor.status();
    hypervisor_ = std::move(*hypervisor);

    auto templates = NewDaemonTemplateStore(config, hypervisor_.get(), hv.kernel, hv.initrd);
    if (!templates.ok()) return templates.status();
    templates_ = std::move(*templates);

    auto network = NewCniPodNetworkManager(PodNetworkOptionsFromConfig(config));
    if (!network.ok()) return network.status();
    network_ = std::move(*network);

    SandboxControllerOptions so;
    so.state_dir = config.state_dir;
    so.kernel = hv.kernel;
    so.initrd = hv.initrd;
    so.default_vcpus = static_cast<uint32_t>(config.hypervisor.default_vcpus);
    so.default_memory_mib = static_cast<uint64_t>(config.hypervisor.default_memory_mib);
    so.boot_timeout = absl::Seconds(config.hypervisor.boot_timeout_seconds);
    so.shared_filesystem = config.hypervisor.shared_filesystem;
    so.shared_dir_max_bytes = static_cast<uint64_t>(config.hypervisor.shared_dir_max_bytes);
    so.agent_dead_after = absl::Milliseconds(config.hypervisor.agent_dead_after_ms);
    if (templates_) {
      so.find_template = [store = templates_.get()](uint32_t vcpus, uint64_t memory_mib) {
        return store->Find(vcpus, memory_mib);
      };
    }
    sandbox_controller_ = std::make_unique<SandboxController>(
        so, sandbox_store_.get(), hypervisor_.get(), network_.get(), &AgentClient::Connect);
    services_.records = records_.get();
    services_.sandboxes = sandbox_controller_.get();
    services_.network = network_.get();
    ImageController::Options image_options;
    image_options.root_dir = absl::StrCat(services_.config.root_dir, "/images");
    image_options.registry = services_.config.registry;
    SetSeccompProfileMaxBytes(services_.config.seccomp_profile_max_bytes);
    auto images = ImageController::Create(std::move(image_options), records_.get());
    if (!images.ok()) return images.status();
    image_controller_ = std::move(*images);
    services_.images = image_controller_.get();
    container_store_ = std::make_unique<ContainerStore>(records_.get(), "container");
    skipped.clear();
    if (absl::Status s = container_store_->Load(&skipped); !s.ok()) return s;
    for (const std::string& why : skipped) PV_LOG(kError) << "unreadable record skipped: " << why;
    events_.Watch(container_store_.get(), false);
    ContainerControllerOptions co;
    co.stats_max_parallel = static_cast<size_t>(config.stats.max_parallel);
    co.stats_agent_timeout = absl::Milliseconds(config.stats.agent_timeout_ms);
    co.empty_dir_max_bytes = static_cast<uint64_t>(config.hypervisor.empty_dir_max_bytes);
    container_controller_ = std::make_unique<ContainerController>(
        co, container_store_.get(), sandbox_store_.get(), sandbox_controller_.get(),
        hypervisor_.get(), image_controller_.get());
    container_controller_->Install();
    services_.containers = container_controller_.get();
    if (absl::Status s = InitHostHandler(); !s.ok()) return s;
    streaming_runtime_ = std::make_unique<ContainerStreamingRuntime>(
        ContainerStreamingOptionsFromConfig(config.streaming), container_controller_.get(),
        sandbox_controller_.get());
    handler_streaming_ =
        std::make_unique<HandlerStreamingRuntime>(streaming_runtime_.get(), host_runtime_.get());
    auto streaming = streaming::StreamingServer::Start(
        streaming::StreamingServerOptions::FromConfig(config.streaming), handler_streaming_.get());
    if (!streaming.ok()) {
      return absl::Status(streaming.status().code(),
                          absl::StrCat("streaming server: ", streaming.status().message()));
    }
    streaming_server_ = std::move(*streaming);
    services_.streaming = streaming_server_.get();
    PV_LOG(kInfo) << "streaming server on " << streaming_server_->BaseUrl();
    PV_LOG(kInfo) << "state loaded: " << sandbox_store_->Size() << " sandboxes, "
                  << image_controller_->List("").size() << " images, "
                  << container_store_->Size() << " containers";
    return absl::OkStatus();
  }

  // The host handler (docs/runtime-handlers.md): its own record kinds and a CNI manager of its
  // own (no VM tap; netns and cache apart from the VM pods', which the VM side reconciles), so
  // each handler recovers only its pods. Absent when crun or the monitor cannot be found.
  absl::Status InitHostHandler() {
    const Config& config = services_.config;
    absl::StatusOr<HostPodPolicy> policy = ParseHostPodPolicy(config.handlers.host_pods);
    if (!policy.ok()) return policy.status();
    services_.host_pods = *policy;
    HostRuntimeOptions ho;
    ho.root_dir = absl::StrCat(config.root_dir, "/host");
    ho.state_dir = absl::StrCat(config.state_dir, "/host");
    ho.crun = config.handlers.crun;
    ho.monitor = config.handlers.monitor.empty() ? ExecutableDir() + "/podvisor-monitor"
                                                 : config.handlers.monitor;
    if (!HostRuntimeAvailable(ho)) {
      PV_LOG(kWarning) << "host handler unavailable (" << ho.crun << " or " << ho.monitor
                       << " is not an executable): pods that need the host are refused";
      return absl::OkStatus();
    }
    for (const std::string& dir : {ho.root_dir, ho.state_dir}) {
      if (absl::Status s = MakeDirs(dir, 0711); !s.ok()) return s;
    }
    host_sandbox_store_ = std::make_unique<SandboxStore>(records_.get(), "host_sandbox");
    host_container_store_ = std::make_unique<ContainerStore>(records_.get(), "host_container");
    std::vector<std::string> skipped;
    if (absl::Status s = host_sandbox_store_->Load(&skipped); !s.ok()) return s;
    if (absl::Status s = host_container_store_->Load(&skipped); !s.ok()) return s;
    for (const std::string& why : skipped) PV_LOG(kError) << "unreadable record skipped: " << why;
    events_.Watch(host_sandbox_store_.get(), true);
    events_.Watch(host_container_store_.get(), true);
    PodNetworkOptions no = PodNetworkOptionsFromConfig(config);
    no.netns_dir = ho.state_dir + "/netns";
    no.cache_dir = ho.root_dir + "/network";
    no.tap_name.clear();
    auto network = NewCniPodNetworkManager(no);
    if (!network.ok()) return network.status();
    host_network_ = std::move(*network);
    host_runtime_ = std::make_unique<HostRuntime>(ho, host_sandbox_store_.get(),
                                                  host_container_store_.get(),
                                                  host_network_.get(), image_controller_.get());
    if (absl::Status s = host_runtime_->Recover(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("host handler: recover: ", s.message()));
    }
    host_runtime_->StartExitWatcher(kHostExitWatch);
    services_.host = host_runtime_.get();
    ContainerController* vm = container_controller_.get();
    HostRuntime* host = host_runtime_.get();
    image_controller_->SetInUseCheck(
        [vm, host](const std::string& id) { return vm->ImageInUse(id) || host->ImageInUse(id); });
    PV_LOG(kInfo) << "host handler: " << host_sandbox_store_->Size() << " pods, "
                  << host_container_store_->Size() << " containers (crun " << ho.crun << ")";
    return absl::OkStatus();
  }

  void InitRuntime() {
    const absl::Time start = absl::Now();
    absl::Status s = hypervisor_->Init();
    if (s.ok()) s = sandbox_controller_->Recover();
    if (s.ok()) s = container_controller_->Recover();
    // In the background: until a template is ready, pods boot cold.
    if (s.ok() && templates_) templates_->Start();
    if (s.ok()) {
      PV_LOG(kInfo) << "runtime ready in " << absl::ToInt64Milliseconds(absl::Now() - start)
                    << " ms (accelerator " << hypervisor_->Accelerator() << ")";
    } else {
      PV_LOG(kError) << "runtime not ready: " << s.message();
    }
    sandbox_controller_->SetReady(s);
    init_done_ = true;
  }

  absl::Status Serve() {
    runtime_service_ = std::make_unique<cri::RuntimeService>(&services_);
    image_service_ = std::make_unique<cri::ImageService>(&services_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("unix:", socket_path_), grpc::InsecureServerCredentials());
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    builder.SetMaxSendMessageSize(kMaxMessageBytes);
    builder.RegisterService(runtime_service_.get());
    builder.RegisterService(image_service_.get());
    // The socket is created with mode 0660 from the start: no window where others can connect.
    mode_t old_umask = ::umask(0117);
    server_ = builder.BuildAndStart();
    ::umask(old_umask);
    if (!server_) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", socket_path_));
    }
    if (::chmod(socket_path_.c_str(), 0660) != 0) {
      return ErrnoStatus(absl::StrCat("chmod ", socket_path_), errno);
    }
    PV_LOG(kInfo) << "podvisord " << PODVISOR_VERSION_STRING << " serving CRI runtime.v1 on unix://"
                  << socket_path_;
    return absl::OkStatus();
  }

  cri::Services services_;
  int lock_fd_ = -1;
  std::string socket_path_;
  std::unique_ptr<RecordStore> records_;
  // Before the stores, whose observers publish to it: destroyed after them.
  ContainerEventBus events_;
  std::unique_ptr<SandboxStore> sandbox_store_;
  std::unique_ptr<Hypervisor> hypervisor_;
  std::unique_ptr<PodNetworkManager> network_;
  std::unique_ptr<VmTemplateStore> templates_;  // builds through hypervisor_: destroyed first
  std::thread init_thread_;
  // The embedded libvirt's root, whose capability probes a stop during start-up ends.
  std::string probe_root_;
  std::atomic<bool> init_done_{false};
  std::unique_ptr<SandboxController> sandbox_controller_;
  std::unique_ptr<ImageController> image_controller_;
  std::unique_ptr<ContainerStore> container_store_;
  std::unique_ptr<ContainerController> container_controller_;
  std::unique_ptr<SandboxStore> host_sandbox_store_;
  std::unique_ptr<ContainerStore> host_container_store_;
  std::unique_ptr<PodNetworkManager> host_network_;
  std::unique_ptr<HostRuntime> host_runtime_;
  std::unique_ptr<ContainerStreamingRuntime> streaming_runtime_;
  std::unique_ptr<HandlerStreamingRuntime> handler_streaming_;
  std::unique_ptr<streaming::StreamingServer> streaming_server_;
  std::unique_ptr<cri::RuntimeService> runtime_service_;
  std::unique_ptr<cri::ImageService> image_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<cri::AdminServer> admin_;
  absl::Mutex live_mu_;
  Config live_config_ ABSL_GUARDED_BY(live_mu_);
  std::unique_ptr<cri::MetricsEndpoint> metrics_ ABSL_GUARDED_BY(live_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const Config& config) {
  auto daemon = std::make_unique<DaemonImpl>();
  if (absl::Status s = daemon->Init(config); !s.ok()) return s;
  return daemon;
}

}  // namespace podvisor
