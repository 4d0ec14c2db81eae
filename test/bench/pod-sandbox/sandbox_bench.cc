// What a pod sandbox costs through the real podvisord: RunPodSandbox, StopPodSandbox and
// RemovePodSandbox latency (median and p90 of N), beside the VM's own share of each run (VM
// create -> agent handshake, as the daemon measured it in the same run: the baseline that CNI,
// the store and guest setup add to), and the PSS of each idle sandbox's QEMU process (and its
// virtiofsd). Measured three times in one run: without the shared filesystem (the baseline),
// with it on cold-booted VMs (virtiofs, shared guest RAM), and with VMs cloned from a template
// (9p; the default once the daemon's template is built, which this bench waits for).
//
// usage: sandbox_bench [iterations=10] [idle_sandboxes=4]   (root; the guest image built)

#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "test/bench/support/bench_support.h"
#include "test/support/daemon_process.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

namespace v1 = runtime::v1;

enum class Mode { kNoSharedFs, kCold, kClone };

class Bench {
 public:
  explicit Bench(Mode mode) {
    const bool shared_filesystem = mode != Mode::kNoSharedFs;
    char shm[] = "/dev/shm/podvisor-bench-templates.XXXXXX";
    if (mkdtemp(shm) != nullptr) template_dir_ = shm;
    std::ofstream(dir_.Join("cni.conflist")) << R"({"cniVersion": "1.0.0", "name": "pvbench",
 "plugins": [{"type": "bridge", "bridge": "pvbench0", "isGateway": true,
   "ipam": {"type": "host-local", "dataDir": ")" << dir_.Join("ipam") << R"(",
            "ranges": [[{"subnet": "10.216.0.0/24"}]]}}, {"type": "loopback"}]})";
    std::ofstream(dir_.Join("config.yaml"))
        << "hypervisor: {accel: tcg, shared_filesystem: " << (shared_filesystem ? "true" : "false")
        << ", templates: " << (mode == Mode::kClone ? "true" : "false")
        << ", template_dir: " << template_dir_ << "}\ncni: {conf_dir: " << dir_.path() << "}\n";
    DaemonProcess::Options o;
    o.root_dir = dir_.Join("root");
    o.state_dir = dir_.Join("st");
    o.socket_path = dir_.Join("pv.sock");
    o.config_path = dir_.Join("config.yaml");
    o.extra_args = {"--log-level", "info"};
    daemon_ = std::make_unique<DaemonProcess>(o);
    std::string error;
    if (!daemon_->Start(&error)) {
      std::fprintf(stderr, "podvisord: %s\n", error.c_str());
      std::exit(1);
    }
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
    if (mode == Mode::kClone) WaitForTemplate();
  }
  ~Bench() {
    daemon_->Stop();
    (void)::system("ip link del pvbench0 2>/dev/null");
    std::filesystem::remove_all(template_dir_);
  }

  void WaitForTemplate() {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 6000; ++i) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(template_dir_, ec)) {
        if (std::filesystem::exists(e.path() / "template.txt")) {
          std::printf("template ready %.1f s after the daemon started\n",
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                          .count());
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::fprintf(stderr, "no template was built\n");
    std::exit(1);
  }

  std::string Run(const std::string& name, double* ms) {
    v1::RunPodSandboxRequest req;
    auto* m = req.mutable_config()->mutable_metadata();
    m->set_name(name);
    m->set_namespace_("bench");
    m->set_uid("uid-" + name);
    v1::RunPodSandboxResponse resp;
    auto start = std::chrono::steady_clock::now();
    grpc::Status s = cri_->runtime().RunPodSandbox(CriClient::Context(300).get(), req, &resp);
    *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
    if (!s.ok()) {
      std::fprintf(stderr, "RunPodSandbox: %s\n", s.error_message().c_str());
      std::exit(1);
    }
    return resp.pod_sandbox_id();
  }

  nlohmann::json Info(const std::string& id) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    req.set_verbose(true);
    v1::PodSandboxStatusResponse resp;
    cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp);
    return nlohmann::json::parse(resp.info().at("info"));
  }

  double Timed(const char* what, const std::string& id) {
    auto start = std::chrono::steady_clock::now();
    grpc::Status s;
    if (std::string(what) == "stop") {
      v1::StopPodSandboxRequest req;
      req.set_pod_sandbox_id(id);
      v1::StopPodSandboxResponse resp;
      s = cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), req, &resp);
    } else {
      v1::RemovePodSandboxRequest req;
      req.set_pod_sandbox_id(id);
      v1::RemovePodSandboxResponse resp;
      s = cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), req, &resp);
    }
    if (!s.ok()) std::fprintf(stderr, "%s: %s\n", what, s.error_message().c_str());
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
  }

 private:
  TempDir dir_;
  std::string template_dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
};

void Measure(Mode mode, int iterations, int idle) {
  const char* names[] = {"shared_filesystem: false, templates: false (baseline)",
                         "shared_filesystem: true, templates: false (cold boots, virtiofs)",
                         "shared_filesystem: true, templates: true (clones, 9p; the default)"};
  std::printf("--- hypervisor.%s\n", names[static_cast<int>(mode)]);
  Bench bench(mode);
  double ms;
  // The first run waits for the daemon's hypervisor initialisation: not counted.
  std::string warm = bench.Run("warmup", &ms);
  std::printf("first RunPodSandbox after start (includes runtime init): %.0f ms\n", ms);
  bench.Timed("remove", warm);

  Series run, boot, stop, remove;
  for (int i = 0; i < iterations; ++i) {
    std::string id = bench.Run(absl::StrCat("pod", i), &ms);
    run.Add(ms);
    if ((bench.Info(id)["vm"]["template"] != "") != (mode == Mode::kClone)) {
      std::fprintf(stderr, "pod %s: not booted as this mode wants\n", id.c_str());
      std::exit(1);
    }
    boot.ms.push_back(bench.Info(id)["vm"]["bootMillis"].get<double>());
    stop.ms.push_back(bench.Timed("stop", id));
    remove.ms.push_back(bench.Timed("remove", id));
  }
  run.Print(mode == Mode::kClone ? "RunPodSandbox (clone, TCG)" : "RunPodSandbox (cold VM, TCG)");
  boot.Print("  of which VM create -> agent handshake");
  stop.Print("StopPodSandbox");
  remove.Print("RemovePodSandbox (after stop)");

  std::vector<std::string> ids;
  for (int i = 0; i < idle; ++i) ids.push_back(bench.Run(absl::StrCat("idle", i), &ms));
  std::this_thread::sleep_for(std::chrono::seconds(5));  // let the guests settle
  long total = 0;
  for (const std::string& id : ids) {
    int pid = bench.Info(id)["vm"]["pid"].get<int>();
    long pss = PssKib(pid);
    long fsd = VirtiofsdPssKib(id.substr(0, 16));
    total += pss + fsd;
    std::printf("idle sandbox %.12s: QEMU pid %d PSS %.1f MiB, virtiofsd PSS %.1f MiB\n",
                id.c_str(), pid, pss / 1024.0, fsd / 1024.0);
  }
  std::printf("idle sandboxes: %d, mean PSS %.1f MiB (QEMU + virtiofsd)\n", idle,
              total / 1024.0 / std::max(idle, 1));
  for (const std::string& id : ids) bench.Timed("remove", id);
}

int Main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 10;
  const int idle = argc > 2 ? std::atoi(argv[2]) : 4;
  Measure(Mode::kNoSharedFs, iterations, idle);
  Measure(Mode::kCold, iterations, idle);
  Measure(Mode::kClone, iterations, idle);
  return 0;
}

}  // namespace
}  // namespace podvisor::testing

int main(int argc, char** argv) { return podvisor::testing::Main(argc, argv); }
