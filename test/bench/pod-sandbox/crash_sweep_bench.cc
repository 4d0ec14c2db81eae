// The kill -9 sweep (docs/reliability.md, "Crashes"): podvisord is killed with SIGKILL at a random
// moment of a pod's life (RunPodSandbox, CreateContainer, StartContainer, StopPodSandbox,
// RemovePodSandbox) and, in some rounds, again during the restart's recovery; then restarted.
// Every object the daemon acknowledged must be found again; then everything is removed and
// nothing may be left: no QEMU, netns, veth on the test bridge, IPAM lease, mount, file under the
// state directory's VM and netns trees, or record. Prints each round and the totals.
// Real podvisord, real TCG guests, real CNI plugins; not part of CI's tests.
//
// usage: crash_sweep_bench [rounds=10] [seed=time]   (root; the guest image built)

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "test/bench/support/bench_support.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "test/support/daemon_process.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

namespace v1 = runtime::v1;
namespace fs = std::filesystem;
constexpr char kImage[] = "docker.io/library/busybox:sweep";
constexpr char kBridge[] = "pvsweep0";

std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// What the daemon acknowledged in a round, and which call was under way when it died.
// The calls of one pod's life, in order: each round kills the daemon inside one of them.
constexpr const char* kPhases[] = {"PullImage",      "RunPodSandbox",  "CreateContainer",
                                   "StartContainer", "StopPodSandbox", "RemovePodSandbox"};
constexpr int kPhaseCount = sizeof(kPhases) / sizeof(kPhases[0]);

struct Acked {
  std::mutex mu;
  std::string step = "none";
  std::string pod, container;
  bool pulled = false, started = false, stopped = false, removed = false;
  bool ended = false;  // Life returned
  std::chrono::steady_clock::time_point begin = std::chrono::steady_clock::now();
  std::vector<double> phase_start_ms;  // when each of kPhases began, from `begin`
  void Set(std::string* field, const std::string& value) {
    std::lock_guard<std::mutex> lock(mu);
    *field = value;
  }
  // Enters kPhases[phase_start_ms.size()].
  void Enter(const char* phase) {
    std::lock_guard<std::mutex> lock(mu);
    step = phase;
    phase_start_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin)
            .count());
  }
};

class Sweep {
 public:
  explicit Sweep(TempDir& dir) : dir_(dir) {}

  bool Setup() {
    registry_ = std::make_unique<LocalRegistry>(dir_.Join("registry"), LocalRegistry::Options{});
    std::string error;
    if (!registry_->Start(&error)) return Fail("registry: " + error);
    OciLayout layout(dir_.Join("layout"));
    layout.Tag("sweep", layout.AddImage({BusyboxLayer()}));
    if (std::string e = Push(layout, "sweep", registry_->host() + "/library/busybox:sweep");
        !e.empty()) {
      return Fail("push: " + e);
    }
    std::ofstream(dir_.Join("cni.conflist")) << absl::StrCat(
        R"({"cniVersion": "1.0.0", "name": "pvsweep", "plugins": [
  {"type": "bridge", "bridge": ")",
        kBridge, R"(", "isGateway": true,
   "ipam": {"type": "host-local", "dataDir": ")",
        dir_.Join("ipam"), R"(",
            "ranges": [[{"subnet": "10.218.0.0/24"}]]}},
  {"type": "loopback"}]})");
    std::ofstream(dir_.Join("config.yaml"))
        << "hypervisor: {accel: tcg, templates: false, boot_timeout_seconds: 120}\n"
        << "cni: {conf_dir: " << dir_.path() << "}\n"
        << "registry:\n  hosts:\n    docker.io:\n      mirrors: [\"http://" << registry_->host()
        << "\"]\n";
    if (!StartDaemon()) return false;
    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(kImage);
    v1::PullImageResponse pulled;
    grpc::Status s = cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled);
    if (!s.ok()) return Fail("PullImage: " + s.error_message());
    baseline_mounts_ = Mounts();
    return true;
  }

  // One pod's life, as far as the daemon lets it get; each acknowledgement recorded.
  void Life(Acked& a, int round) {
    v1::PodSandboxConfig config;
    config.mutable_metadata()->set_name(absl::StrCat("sweep-", round));
    config.mutable_metadata()->set_namespace_("sweep");
    config.mutable_metadata()->set_uid(absl::StrCat("uid-sweep-", round));
    config.set_log_directory(dir_.Join(absl::StrCat("logs/", round)));
    {
      // The image again from the registry: no container uses it between lives.
      v1::RemoveImageRequest rm;
      rm.mutable_image()->set_image(kImage);
      v1::RemoveImageResponse rmd;
      (void)cri_->image().RemoveImage(CriClient::Context(60).get(), rm, &rmd);
    }
    {
      std::lock_guard<std::mutex> lock(a.mu);
      a.begin = std::chrono::steady_clock::now();
    }
    a.Enter("PullImage");
    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(kImage);
    v1::PullImageResponse pulled;
    if (!cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled).ok()) return;
    {
      std::lock_guard<std::mutex> lock(a.mu);
      a.pulled = true;
    }
    a.Enter("RunPodSandbox");
    v1::RunPodSandboxRequest run;
    *run.mutable_config() = config;
    v1::RunPodSandboxResponse ran;
    if (!cri_->runtime().RunPodSandbox(CriClient::Context(300).get(), run, &ran).ok()) return;
    a.Set(&a.pod, ran.pod_sandbox_id());
    a.Enter("CreateContainer");
    v1::CreateContainerRequest create;
    create.set_pod_sandbox_id(ran.pod_sandbox_id());
    create.mutable_config()->mutable_metadata()->set_name("c");
    create.mutable_config()->mutable_image()->set_image(kImage);
    create.mutable_config()->add_command("sleep");
    create.mutable_config()->add_command("3600");
    create.mutable_config()->set_log_path("c.log");
    *create.mutable_sandbox_config() = config;
    v1::CreateContainerResponse created;
    if (!cri_->runtime().CreateContainer(CriClient::Context(120).get(), create, &created).ok()) {
      return;
    }
    a.Set(&a.container, created.container_id());
    a.Enter("StartContainer");
    v1::StartContainerRequest start;
    start.set_container_id(created.container_id());
    v1::StartContainerResponse started;
    if (!cri_->runtime().StartContainer(CriClient::Context(120).get(), start, &started).ok())
      return;
    {
      std::lock_guard<std::mutex> lock(a.mu);
      a.started = true;
    }
    a.Enter("StopPodSandbox");
    v1::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(ran.pod_sandbox_id());
    v1::StopPodSandboxResponse stopped;
    if (!cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped).ok()) return;
    {
      std::lock_guard<std::mutex> lock(a.mu);
      a.stopped = true;
    }
    a.Enter("RemovePodSandbox");
    v1::RemovePodSandboxRequest remove;
    remove.set_pod_sandbox_id(ran.pod_sandbox_id());
    v1::RemovePodSandboxResponse removed;
    if (!cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), remove, &removed).ok()) {
      return;
    }
    {
      std::lock_guard<std::mutex> lock(a.mu);
      a.removed = true;
      a.step = "done";
      a.phase_start_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a.begin)
              .count());
    }
  }

  // Two whole lives without a kill (the second, warm, is kept): when each call begins and
  // ends, the windows the random kills fall in.
  bool Calibrate() {
    for (int i = 0; i < 2; ++i) {
      Acked a;
      Life(a, -i);
      if (!a.removed) return Fail("calibration life did not complete (" + a.step + ")");
      phase_ms_ = a.phase_start_ms;
    }
    std::printf("calibration: one pod life takes %.1f s:", phase_ms_.back() / 1000);
    for (int i = 0; i < kPhaseCount; ++i) {
      std::printf(" %s %.0f ms", kPhases[i], phase_ms_[i + 1] - phase_ms_[i]);
    }
    std::printf("\n");
    return true;
  }

  // One round; returns the problems found (empty: none).
  std::vector<std::string> Round(int round, std::mt19937& rng) {
    Acked a;
    // A call chosen evenly; once the life enters it, a moment inside it as long as the
    // calibration's took (a short call may be over by then: the round says where it landed).
    const int phase = std::uniform_int_distribution<int>(0, kPhaseCount - 1)(rng);
    const double window = phase_ms_[phase + 1] - phase_ms_[phase];
    const auto delay = std::chrono::microseconds(
        static_cast<int64_t>(std::uniform_real_distribution<double>(0, window * 1000)(rng)));
    std::thread life([&] {
      Life(a, round);
      std::lock_guard<std::mutex> lock(a.mu);
      a.ended = true;
    });
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(a.mu);
        if (a.ended || static_cast<int>(a.phase_start_ms.size()) > phase) break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::this_thread::sleep_for(delay);
    const int kill_ms = static_cast<int>(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a.begin)
            .count());
    std::string step;
    {
      std::lock_guard<std::mutex> lock(a.mu);
      step = a.step;
    }
    daemon_->Kill();
    life.join();
    std::string during_restart = "";
    if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
      // Killed again while recovering.
      const int again_ms = std::uniform_int_distribution<int>(0, 3000)(rng);
      if (!StartDaemon()) return {"restart failed"};
      std::this_thread::sleep_for(std::chrono::milliseconds(again_ms));
      daemon_->Kill();
      during_restart = absl::StrCat(", again ", again_ms, " ms into the restart");
    }
    std::printf("round %d: aimed at %s, killed at %d ms during %s%s\n", round, kPhases[phase],
                kill_ms, step.c_str(), during_restart.c_str());
    std::fflush(stdout);
    if (!StartDaemon()) return {"restart failed"};
    // As kubelet does: nothing is judged before the daemon says its runtime is ready (the
    // recovery of what the killed daemon left runs before that).
    if (!WaitRuntimeReady(300)) return {"RuntimeReady not reached within 300 s of the restart"};
    std::vector<std::string> problems = CheckAcked(a);
    RemoveEverything();
    for (const std::string& leak : Leaks()) problems.push_back("leak: " + leak);
    return problems;
  }

  void Stop() {
    cri_.reset();
    if (daemon_) daemon_->Stop();
    (void)::system(absl::StrCat("ip link del ", kBridge, " 2>/dev/null").c_str());
  }

 private:
  bool Fail(const std::string& what) {
    std::fprintf(stderr, "crash_sweep_bench: %s\n", what.c_str());
    return false;
  }

  bool StartDaemon() {
    cri_.reset();
    DaemonProcess::Options o;
    o.root_dir = dir_.Join("root");
    o.state_dir = dir_.Join("st");
    o.socket_path = dir_.Join("pv.sock");
    o.config_path = dir_.Join("config.yaml");
    o.log_path = dir_.Join("podvisord.log");
    o.log_level = "info";
    daemon_ = std::make_unique<DaemonProcess>(o);
    std::string error;
    if (!daemon_->Start(&error, 60000)) return Fail("podvisord: " + error);
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
    return true;
  }

  bool WaitRuntimeReady(int timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      v1::StatusResponse status;
      if (cri_->runtime().Status(CriClient::Context(10).get(), {}, &status).ok()) {
        for (const v1::RuntimeCondition& c : status.status().conditions()) {
          if (c.type() == "RuntimeReady" && c.status()) return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::vector<std::string> CheckAcked(Acked& a) {
    std::vector<std::string> problems;
    v1::ImageStatusRequest image;
    image.mutable_image()->set_image(kImage);
    v1::ImageStatusResponse image_status;
    grpc::Status is = cri_->image().ImageStatus(CriClient::Context(60).get(), image, &image_status);
    if (!is.ok()) {
      problems.push_back("ImageStatus after restart: " + is.error_message());
    } else if (a.pulled && !image_status.has_image()) {
      problems.push_back("pulled image " + std::string(kImage) + " is gone");
    } else if (image_status.has_image() && image_status.image().size() == 0) {
      problems.push_back("image " + std::string(kImage) + " is listed with size 0");
    }
    v1::ListPodSandboxResponse pods;
    grpc::Status s = cri_->runtime().ListPodSandbox(CriClient::Context(300).get(), {}, &pods);
    if (!s.ok()) return {"ListPodSandbox after restart: " + s.error_message()};
    const v1::PodSandbox* pod = nullptr;
    for (const v1::PodSandbox& p : pods.items()) {
      if (p.id() == a.pod) pod = &p;
    }
    // A RemovePodSandbox the kill cut short may have removed the pod and its container or not.
    const bool removing = a.step == "RemovePodSandbox";
    if (!a.pod.empty() && !a.removed && !removing && pod == nullptr) {
      problems.push_back("acknowledged pod " + a.pod + " is gone");
    }
    if (a.removed && pod != nullptr) problems.push_back("removed pod " + a.pod + " is back");
    if (a.stopped && pod != nullptr && pod->state() == v1::SANDBOX_READY) {
      problems.push_back("stopped pod " + a.pod + " is ready again");
    }
    v1::ListContainersResponse containers;
    s = cri_->runtime().ListContainers(CriClient::Context(60).get(), {}, &containers);
    if (!s.ok()) return {"ListContainers after restart: " + s.error_message()};
    bool found = false;
    for (const v1::Container& c : containers.containers()) found |= c.id() == a.container;
    if (!a.container.empty() && !a.removed && !removing && !found) {
      problems.push_back("acknowledged container " + a.container + " is gone");
    }
    if (a.started && !a.stopped && found) {
      for (const v1::Container& c : containers.containers()) {
        if (c.id() == a.container && c.state() == v1::CONTAINER_CREATED) {
          problems.push_back("started container " + a.container + " is CREATED again");
        }
      }
    }
    return problems;
  }

  void RemoveEverything() {
    v1::ListPodSandboxResponse pods;
    (void)cri_->runtime().ListPodSandbox(CriClient::Context(300).get(), {}, &pods);
    for (const v1::PodSandbox& p : pods.items()) {
      v1::StopPodSandboxRequest stop;
      stop.set_pod_sandbox_id(p.id());
      v1::StopPodSandboxResponse stopped;
      grpc::Status s =
          cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped);
      if (!s.ok())
        std::printf("  StopPodSandbox %s: %s\n", p.id().c_str(), s.error_message().c_str());
      v1::RemovePodSandboxRequest remove;
      remove.set_pod_sandbox_id(p.id());
      v1::RemovePodSandboxResponse removed;
      s = cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), remove, &removed);
      if (!s.ok())
        std::printf("  RemovePodSandbox %s: %s\n", p.id().c_str(), s.error_message().c_str());
    }
  }

  std::set<std::string> Mounts() {
    std::set<std::string> out;
    for (absl::string_view line : absl::StrSplit(Slurp("/proc/self/mountinfo"), '\n')) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      if (f.size() > 4 && absl::StartsWith(f[4], dir_.path())) out.insert(f[4]);
    }
    return out;
  }

  // Entries of a directory ("" when it does not exist).
  std::vector<std::string> Entries(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename());
    return out;
  }

  std::vector<std::string> Leaks() {
    std::vector<std::string> leaks = PodsLeftBehind(*cri_, dir_);
    for (const std::string& e : Entries(dir_.Join("st/netns"))) leaks.push_back("netns " + e);
    for (const std::string& e : Entries(dir_.Join("ipam/pvsweep"))) {
      if (e != "lock" && !absl::StartsWith(e, "last_reserved_ip")) leaks.push_back("IPAM " + e);
    }
    const std::string veths = Shell(absl::StrCat("ip -o link show master ", kBridge));
    for (absl::string_view line : absl::StrSplit(veths, '\n', absl::SkipEmpty())) {
      leaks.push_back(absl::StrCat("veth ", line.substr(0, line.find('@'))));
    }
    // A pull the kill cut short: its partial download is the restart's to remove.
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir_.Join("root"), ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory() && it->path().filename() == "ingest") {
        for (const std::string& e : Entries(it->path())) leaks.push_back("download " + e);
        it.disable_recursion_pending();
      }
    }
    for (const std::string& m : Mounts()) {
      if (!baseline_mounts_.contains(m)) leaks.push_back("mount " + m);
    }
    return leaks;
  }

  TempDir& dir_;
  std::unique_ptr<LocalRegistry> registry_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
  std::set<std::string> baseline_mounts_;
  std::vector<double> phase_ms_;  // kPhases' starts, then the end of the life
};

int Main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 10;
  const unsigned seed = argc > 2 ? static_cast<unsigned>(std::atoll(argv[2]))
                                 : static_cast<unsigned>(::time(nullptr));
  std::printf("crash_sweep_bench: %d rounds, seed %u, load %s", rounds, seed,
              Slurp("/proc/loadavg").c_str());
  TempDir dir;
  Sweep sweep(dir);
  if (!sweep.Setup() || !sweep.Calibrate()) {
    sweep.Stop();
    return 1;
  }
  std::mt19937 rng(seed);
  int leaks = 0, lost = 0, run = 0;
  for (int r = 1; r <= rounds; ++r) {
    std::vector<std::string> problems = sweep.Round(r, rng);
    ++run;
    for (const std::string& p : problems) {
      std::printf("  round %d: %s\n", r, p.c_str());
      (absl::StartsWith(p, "leak") ? leaks : lost)++;
    }
    std::fflush(stdout);
  }
  sweep.Stop();
  std::printf("rounds run: %d   leaks found: %d   acknowledged objects lost or wrong: %d\n", run,
              leaks, lost);
  std::printf("load at the end: %s", Slurp("/proc/loadavg").c_str());
  return leaks + lost == 0 ? 0 : 1;
}

}  // namespace
}  // namespace podvisor::testing

int main(int argc, char** argv) { return podvisor::testing::Main(argc, argv); }
