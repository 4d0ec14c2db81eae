// How many idle pods one machine holds and what each costs (issue 12, "Density"): N pods (default
// 50) through the real podvisord, each cloned from the daemon's template (the bench waits for
// it and counts pods that booted cold instead) and running one busybox container that sleeps,
// started `parallel` at a time. Then one ExecSync(`true`) in every pod (each must answer 0), the
// PSS of every pod's QEMU (and of its virtiofsd, for a pod that booted cold), and the host's
// MemAvailable before the first pod and with all of them idle. The image is pushed to a
// docker-registry on loopback.
//
// usage: density_bench [pods=50] [parallel=2]   (root; the guest image built)

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "test/bench/support/bench_support.h"
#include "test/support/daemon_process.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"
#include "test/support/vm_templates.h"

namespace podvisor::testing {
namespace {

namespace v1 = runtime::v1;
constexpr char kImage[] = "docker.io/library/busybox:density";

void PushBusybox(const TempDir& dir, const LocalRegistry& registry) {
  OciLayout layout(dir.Join("layout"));
  layout.Tag("density", layout.AddImage({BusyboxLayer()}));
  if (std::string e = Push(layout, "density", registry.host() + "/library/busybox:density");
      !e.empty()) {
    std::fprintf(stderr, "push: %s\n", e.c_str());
    std::exit(1);
  }
}

// One pod of the bench and what was measured of it.
struct Pod {
  std::string id;
  std::string container;
  double start_ms = 0;  // RunPodSandbox + CreateContainer + StartContainer
  bool cloned = false;
  int qemu_pid = 0;
  std::string error;
};

class Density {
 public:
  Density(int pods, int parallel) : pods_(pods), parallel_(parallel) {}

  int Run() {
    if (!StartDaemon()) return Finish(1);
    const double waited = WaitForTemplate(template_dir_, 1800);
    if (waited < 0) {
      std::fprintf(stderr, "no template was built; see %s\n", dir_.Join("podvisord.log").c_str());
      return Finish(1);
    }
    std::printf("template ready %.1f s after the daemon started\n", waited);
    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(kImage);
    v1::PullImageResponse pulled;
    grpc::Status s = cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled);
    if (!s.ok()) {
      std::fprintf(stderr, "PullImage: %s\n", s.error_message().c_str());
      return Finish(1);
    }
    const long mem_before = MemAvailableKib();
    // A pod that fails stops the starting; those that run are still measured.
    const bool all_started = StartAll();
    std::this_thread::sleep_for(std::chrono::seconds(10));  // let the guests settle
    const bool answered = ExecInAll();
    Memory(mem_before);
    return Finish(all_started && answered ? 0 : 1);
  }

 private:
  bool StartDaemon() {
    template_dir_ = MakeTemplateDir("podvisor-density-templates");
    if (!registry_.Start(&error_)) {
      std::fprintf(stderr, "registry: %s\n", error_.c_str());
      return false;
    }
    PushBusybox(dir_, registry_);
    bridge_ = absl::StrCat("pvdens", getpid() % 100000);
    const DaemonProcess::Options o =
        WriteTemplateDaemonFiles(dir_, bridge_, "10.217.0.0/22", template_dir_, registry_.host());
    daemon_ = std::make_unique<DaemonProcess>(o);
    if (!daemon_->Start(&error_)) {
      std::fprintf(stderr, "podvisord: %s\n", error_.c_str());
      return false;
    }
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
    return true;
  }

  v1::PodSandboxConfig PodConfig(int i) {
    v1::PodSandboxConfig c;
    const std::string name = absl::StrCat("idle", i);
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("density");
    c.mutable_metadata()->set_uid("uid-" + name);
    c.set_hostname(name);
    c.set_log_directory(dir_.Join("logs/" + name));
    c.mutable_linux();
    return c;
  }

  // RunPodSandbox, CreateContainer (busybox sleeping), StartContainer.
  void StartOne(int i, Pod* pod) {
    const v1::PodSandboxConfig config = PodConfig(i);
    pod->start_ms = Timed([&] {
      v1::RunPodSandboxRequest run;
      *run.mutable_config() = config;
      v1::RunPodSandboxResponse ran;
      grpc::Status s = cri_->runtime().RunPodSandbox(CriClient::Context(600).get(), run, &ran);
      if (!s.ok()) {
        pod->error = "RunPodSandbox: " + s.error_message();
        return;
      }
      pod->id = ran.pod_sandbox_id();
      v1::CreateContainerRequest create;
      create.set_pod_sandbox_id(pod->id);
      create.mutable_config()->mutable_metadata()->set_name("sleeper");
      create.mutable_config()->mutable_image()->set_image(kImage);
      create.mutable_config()->add_command("sleep");
      create.mutable_config()->add_command("100000");
      create.mutable_config()->set_log_path("sleeper.log");
      *create.mutable_sandbox_config() = config;
      v1::CreateContainerResponse created;
      s = cri_->runtime().CreateContainer(CriClient::Context(600).get(), create, &created);
      if (!s.ok()) {
        pod->error = "CreateContainer: " + s.error_message();
        return;
      }
      pod->container = created.container_id();
      v1::StartContainerRequest start;
      start.set_container_id(pod->container);
      v1::StartContainerResponse started;
      s = cri_->runtime().StartContainer(CriClient::Context(600).get(), start, &started);
      if (!s.ok()) pod->error = "StartContainer: " + s.error_message();
    });
    if (!pod->error.empty()) return;
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(pod->id);
    req.set_verbose(true);
    v1::PodSandboxStatusResponse resp;
    grpc::Status s = cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp);
    if (!s.ok() || resp.info().count("info") == 0) {
      pod->error = "PodSandboxStatus: " + s.error_message();
      return;
    }
    nlohmann::json info = nlohmann::json::parse(resp.info().at("info"), nullptr, false);
    if (!info.is_object() || !info.contains("vm") || !info["vm"].is_object()) {
      pod->error = "PodSandboxStatus: no vm in the verbose info";
      return;
    }
    pod->cloned = info["vm"].value("template", "") != "";
    pod->qemu_pid = info["vm"].value("pid", 0);
  }

  bool StartAll() {
    pods_list_.resize(pods_);
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    const double total_ms = Timed([&] {
      std::vector<std::thread> workers;
      for (int w = 0; w < parallel_; ++w) {
        workers.emplace_back([&] {
          for (int i; !failed && (i = next++) < pods_;) {
            StartOne(i, &pods_list_[i]);
            if (!pods_list_[i].error.empty()) failed = true;
          }
        });
      }
      for (auto& t : workers) t.join();
    });
    Series each;
    int cloned = 0, started = 0;
    for (const Pod& p : pods_list_) {
      if (!p.error.empty()) std::fprintf(stderr, "pod: %s\n", p.error.c_str());
      if (p.id.empty() || !p.error.empty()) continue;
      ++started;
      cloned += p.cloned;
      each.Add(p.start_ms);
    }
    std::printf("%d of %d pods started (%d cloned, %d cold), %d at a time, in %.1f s\n", started,
                pods_, cloned, started - cloned, parallel_, total_ms / 1000);
    std::printf(
        "per pod (RunPodSandbox + CreateContainer + StartContainer): median %.0f ms, "
        "p90 %.0f ms, max %.0f ms\n",
        each.Percentile(0.5), each.Percentile(0.9), each.Percentile(1.0));
    return started == pods_;
  }

  static bool Running(const Pod& p) { return !p.id.empty() && p.error.empty(); }

  bool ExecInAll() {
    Series ms;
    int answered = 0, running = 0;
    for (const Pod& p : pods_list_) {
      if (!Running(p)) continue;
      ++running;
      v1::ExecSyncRequest req;
      req.set_container_id(p.container);
      req.add_cmd("true");
      req.set_timeout(60);
      v1::ExecSyncResponse resp;
      grpc::Status s;
      ms.Add(
          Timed([&] { s = cri_->runtime().ExecSync(CriClient::Context(120).get(), req, &resp); }));
      if (s.ok() && resp.exit_code() == 0) {
        ++answered;
      } else {
        std::fprintf(stderr, "ExecSync in pod %.12s: %s (exit %d)\n", p.id.c_str(),
                     s.error_message().c_str(), resp.exit_code());
      }
    }
    std::printf("ExecSync(true) answered 0 in %d of %d running pods: median %.0f ms, p90 %.0f ms\n",
                answered, running, ms.Percentile(0.5), ms.Percentile(0.9));
    return answered == running;
  }

  void Memory(long mem_before) {
    Series qemu, total;
    for (const Pod& p : pods_list_) {
      if (!Running(p)) continue;
      const long q = p.qemu_pid > 0 ? PssKib(p.qemu_pid) : -1;
      const long fsd = p.cloned ? 0 : VirtiofsdPssKib(p.id.substr(0, 16));
      if (q < 0) {
        std::fprintf(stderr, "pod %.12s: no QEMU process %d\n", p.id.c_str(), p.qemu_pid);
        continue;
      }
      qemu.Add(q / 1024.0);
      total.Add((q + fsd) / 1024.0);
    }
    const long mem_after = MemAvailableKib();
    std::printf(
        "PSS of %zu idle pods (QEMU + virtiofsd): total %.0f MiB, per pod mean %.1f MiB, "
        "median %.1f MiB, max %.1f MiB\n",
        total.ms.size(), total.Sum(), total.Sum() / std::max<size_t>(total.ms.size(), 1),
        total.Percentile(0.5), total.Percentile(1.0));
    std::printf(
        "host MemAvailable: %.0f MiB before the first pod, %.0f MiB with all idle "
        "(%.1f MiB per pod; includes the template's RAM file and page cache)\n",
        mem_before / 1024.0, mem_after / 1024.0,
        (mem_before - mem_after) / 1024.0 / std::max<size_t>(total.ms.size(), 1));
  }

  int Finish(int rc) {
    double ms = Timed([&] {
      for (const Pod& p : pods_list_) {
        if (p.id.empty()) continue;
        v1::StopPodSandboxRequest stop;
        stop.set_pod_sandbox_id(p.id);
        v1::StopPodSandboxResponse stopped;
        (void)cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped);
        v1::RemovePodSandboxRequest remove;
        remove.set_pod_sandbox_id(p.id);
        v1::RemovePodSandboxResponse removed;
        (void)cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), remove, &removed);
      }
    });
    if (!pods_list_.empty()) std::printf("stop + remove of every pod: %.1f s\n", ms / 1000);
    if (daemon_) daemon_->Stop();
    (void)::system(absl::StrCat("ip link del ", bridge_, " 2>/dev/null").c_str());
    if (!template_dir_.empty()) std::filesystem::remove_all(template_dir_);
    return rc;
  }

  const int pods_;
  const int parallel_;
  TempDir dir_;
  LocalRegistry registry_{dir_.Join("registry"), {}};
  std::string error_;
  std::string bridge_;
  std::string template_dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
  std::vector<Pod> pods_list_;
};

}  // namespace
}  // namespace podvisor::testing

int main(int argc, char** argv) {
  const int pods = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
  const int parallel = argc > 2 ? std::max(1, std::atoi(argv[2])) : 2;
  return podvisor::testing::Density(pods, parallel).Run();
}
