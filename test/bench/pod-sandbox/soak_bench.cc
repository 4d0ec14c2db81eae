// The soak of docs/reliability.md: N pods (default 20) through the real podvisord, each cloned
// from the daemon's template and running a container that logs a line a second, then M minutes
// (default 30) of mixed load from two client threads: ExecSync, container and pod stats, statuses,
// lists, and create/start/wait/remove churn of short containers in random pods. Every 30 s it
// samples podvisord's RSS, threads and open descriptors; at the end it prints each sample, the
// figures of each operation (count, errors, median, p90), whether every pod's log kept growing,
// and, after every pod is removed, what is left (QEMU processes, records, VM directories, mounts).
// It exits 1 on any error, a stalled log or a leak.
//
// usage: soak_bench [minutes=30] [pods=20]   (root; the guest image built)

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
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "test/bench/support/bench_support.h"
#include "test/support/daemon_process.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"
#include "test/support/vm_templates.h"

namespace podvisor::testing {
namespace {

namespace fs = std::filesystem;
namespace v1 = runtime::v1;
constexpr char kImage[] = "docker.io/library/busybox:soak";
constexpr int kSampleSeconds = 30;

struct Pod {
  std::string name;
  std::string id;
  std::string ticker;  // the logging container
  std::string log;     // its log file on the host
  uintmax_t log_bytes = 0;
  int stalls = 0;  // samples at which its log had not grown since the previous one
};

struct Sample {
  double minute = 0;
  long rss_kib = 0;
  int threads = 0;
  int fds = 0;
  size_t qemus = 0;
};

// A figure of /proc/<pid>/status ("VmRSS:", "Threads:"), -1 when unreadable.
long StatusField(pid_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string word;
  while (in >> word) {
    if (word == key) {
      long v = -1;
      in >> v;
      return v;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

int OpenFds(pid_t pid) {
  std::error_code ec;
  int n = 0;
  for (auto it = fs::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

class Soak {
 public:
  Soak(int minutes, int pods) : minutes_(minutes), pod_count_(pods) {}

  int Run() {
    if (!StartDaemon()) return Finish(false);
    const double waited = WaitForTemplate(template_dir_, 1800);
    if (waited < 0) {
      std::fprintf(stderr, "no template was built; see %s\n", dir_.Join("podvisord.log").c_str());
      return Finish(false);
    }
    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(kImage);
    v1::PullImageResponse pulled;
    if (grpc::Status s = cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled);
        !s.ok()) {
      std::fprintf(stderr, "PullImage: %s\n", s.error_message().c_str());
      return Finish(false);
    }
    for (int i = 0; i < pod_count_; ++i) {
      if (!StartPod(i)) return Finish(false);
    }
    std::printf("%d pods running; load %s", pod_count_, Slurp("/proc/loadavg").c_str());
    std::fflush(stdout);
    TakeSample(0);
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::minutes(minutes_);
    std::vector<std::thread> clients;
    for (int t = 0; t < 2; ++t) {
      clients.emplace_back([this, end, t] { Client(end, static_cast<unsigned>(t + 1)); });
    }
    for (int n = 1; std::chrono::steady_clock::now() < end; ++n) {
      std::this_thread::sleep_until(std::min(end, start + std::chrono::seconds(kSampleSeconds * n)));
      TakeSample(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                 60);
      CheckLogs();
    }
    for (std::thread& t : clients) t.join();
    return Finish(Report());
  }

 private:
  bool StartDaemon() {
    template_dir_ = MakeTemplateDir("podvisor-soak-templates");
    if (!registry_.Start(&error_)) {
      std::fprintf(stderr, "registry: %s\n", error_.c_str());
      return false;
    }
    OciLayout layout(dir_.Join("layout"));
    layout.Tag("soak", layout.AddImage({BusyboxLayer()}));
    if (std::string e = Push(layout, "soak", registry_.host() + "/library/busybox:soak");
        !e.empty()) {
      std::fprintf(stderr, "push: %s\n", e.c_str());
      return false;
    }
    bridge_ = absl::StrCat("pvsoak", getpid() % 100000);
    const DaemonProcess::Options o =
        WriteTemplateDaemonFiles(dir_, bridge_, "10.218.0.0/22", template_dir_, registry_.host());
    daemon_ = std::make_unique<DaemonProcess>(o);
    if (!daemon_->Start(&error_)) {
      std::fprintf(stderr, "podvisord: %s\n", error_.c_str());
      return false;
    }
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
    return true;
  }

  v1::PodSandboxConfig PodConfig(const std::string& name) {
    v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("soak");
    c.mutable_metadata()->set_uid("uid-" + name);
    c.set_hostname(name);
    c.set_log_directory(dir_.Join("logs/" + name));
    c.mutable_linux();
    return c;
  }

  grpc::Status CreateAndStart(const Pod& pod, const std::string& name,
                              const std::vector<std::string>& cmd, std::string* id) {
    v1::CreateContainerRequest create;
    create.set_pod_sandbox_id(pod.id);
    create.mutable_config()->mutable_metadata()->set_name(name);
    create.mutable_config()->mutable_image()->set_image(kImage);
    for (const std::string& a : cmd) create.mutable_config()->add_command(a);
    create.mutable_config()->set_log_path(name + ".log");
    *create.mutable_sandbox_config() = PodConfig(pod.name);
    v1::CreateContainerResponse created;
    grpc::Status s = cri_->runtime().CreateContainer(CriClient::Context(300).get(), create, &created);
    if (!s.ok()) return s;
    *id = created.container_id();
    v1::StartContainerRequest start;
    start.set_container_id(*id);
    v1::StartContainerResponse started;
    return cri_->runtime().StartContainer(CriClient::Context(300).get(), start, &started);
  }

  bool StartPod(int i) {
    Pod pod;
    pod.name = absl::StrCat("soak", i);
    v1::RunPodSandboxRequest run;
    *run.mutable_config() = PodConfig(pod.name);
    v1::RunPodSandboxResponse ran;
    grpc::Status s = cri_->runtime().RunPodSandbox(CriClient::Context(600).get(), run, &ran);
    if (!s.ok()) {
      std::fprintf(stderr, "RunPodSandbox %s: %s\n", pod.name.c_str(), s.error_message().c_str());
      return false;
    }
    pod.id = ran.pod_sandbox_id();
    pods_.push_back(pod);  // removed at the end even if its container fails
    s = CreateAndStart(pod, "ticker",
                       {"sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done"},
                       &pods_.back().ticker);
    if (!s.ok()) {
      std::fprintf(stderr, "ticker in %s: %s\n", pod.name.c_str(), s.error_message().c_str());
      return false;
    }
    pods_.back().log = dir_.Join("logs/" + pod.name + "/ticker.log");
    return true;
  }

  void Record(const std::string& op, double ms, const grpc::Status& s, const std::string& why) {
    std::lock_guard<std::mutex> lock(mu_);
    Op& o = ops_[op];
    o.ms.Add(ms);
    if (!s.ok() || !why.empty()) {
      if (o.errors++ < 3) {
        std::fprintf(stderr, "%s: %s%s\n", op.c_str(), s.error_message().c_str(), why.c_str());
      }
    }
  }

  // One client: operations in a random mix until `end`.
  void Client(std::chrono::steady_clock::time_point end, unsigned seed) {
    std::mt19937 rng(seed);
    while (std::chrono::steady_clock::now() < end) {
      const Pod& pod = pods_[rng() % pods_.size()];
      grpc::Status s;
      std::string why;
      switch (rng() % 6) {
        case 0: {
          v1::ExecSyncRequest req;
          req.set_container_id(pod.ticker);
          req.add_cmd("echo");
          req.add_cmd("soak");
          req.set_timeout(60);
          v1::ExecSyncResponse resp;
          const double ms =
              Timed([&] { s = cri_->runtime().ExecSync(CriClient::Context(120).get(), req, &resp); });
          if (s.ok() && (resp.exit_code() != 0 || resp.stdout() != "soak\n")) {
            why = absl::StrCat(" exit ", resp.exit_code(), " stdout \"", resp.stdout(), "\"");
          }
          Record("ExecSync", ms, s, why);
          break;
        }
        case 1: {
          v1::ListContainerStatsResponse resp;
          const double ms = Timed([&] {
            s = cri_->runtime().ListContainerStats(CriClient::Context(60).get(), {}, &resp);
          });
          Record("ListContainerStats", ms, s, "");
          break;
        }
        case 2: {
          v1::ListPodSandboxStatsResponse resp;
          const double ms = Timed([&] {
            s = cri_->runtime().ListPodSandboxStats(CriClient::Context(60).get(), {}, &resp);
          });
          Record("ListPodSandboxStats", ms, s, "");
          break;
        }
        case 3: {
          v1::ContainerStatusRequest req;
          req.set_container_id(pod.ticker);
          v1::ContainerStatusResponse resp;
          const double ms = Timed([&] {
            s = cri_->runtime().ContainerStatus(CriClient::Context(60).get(), req, &resp);
          });
          if (s.ok() && resp.status().state() != v1::CONTAINER_RUNNING) why = " ticker not running";
          Record("ContainerStatus", ms, s, why);
          break;
        }
        case 4: {
          v1::ListContainersResponse resp;
          const double ms = Timed([&] {
            s = cri_->runtime().ListContainers(CriClient::Context(60).get(), {}, &resp);
          });
          Record("ListContainers", ms, s, "");
          break;
        }
        default:
          Churn(pod);
      }
    }
  }

  // A short container created, started, waited for and removed.
  void Churn(const Pod& pod) {
    std::string id;
    grpc::Status s;
    std::string why;
    const double ms = Timed([&] {
      s = CreateAndStart(pod, absl::StrCat("churn", churn_++), {"echo", "churn"}, &id);
      for (int i = 0; s.ok() && i < 600; ++i) {
        v1::ContainerStatusRequest req;
        req.set_container_id(id);
        v1::ContainerStatusResponse resp;
        s = cri_->runtime().ContainerStatus(CriClient::Context(60).get(), req, &resp);
        if (s.ok() && resp.status().state() == v1::CONTAINER_EXITED) {
          if (resp.status().exit_code() != 0) why = " exit code not 0";
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (!id.empty()) {
        v1::RemoveContainerRequest req;
        req.set_container_id(id);
        v1::RemoveContainerResponse resp;
        grpc::Status r = cri_->runtime().RemoveContainer(CriClient::Context(120).get(), req, &resp);
        if (s.ok()) s = r;
      }
    });
    Record("create/start/wait/remove", ms, s, why);
  }

  void TakeSample(double minute) {
    Sample x;
    x.minute = minute;
    x.rss_kib = StatusField(daemon_->pid(), "VmRSS:");
    x.threads = static_cast<int>(StatusField(daemon_->pid(), "Threads:"));
    x.fds = OpenFds(daemon_->pid());
    x.qemus = QemuProcessesUnder(dir_.path()).size();
    samples_.push_back(x);
    std::printf("minute %5.1f: podvisord RSS %6.1f MiB, %3d threads, %4d fds; %zu QEMU\n",
                x.minute, x.rss_kib / 1024.0, x.threads, x.fds, x.qemus);
    std::fflush(stdout);
  }

  void CheckLogs() {
    for (Pod& p : pods_) {
      std::error_code ec;
      const uintmax_t size = fs::file_size(p.log, ec);
      if (ec || size <= p.log_bytes) ++p.stalls;
      if (!ec) p.log_bytes = size;
    }
  }

  bool Report() {
    bool ok = true;
    std::printf("\n%-28s %8s %7s %10s %10s\n", "operation", "count", "errors", "median ms",
                "p90 ms");
    for (const auto& [name, op] : ops_) {
      std::printf("%-28s %8zu %7d %10.1f %10.1f\n", name.c_str(), op.ms.ms.size(), op.errors,
                  op.ms.Percentile(0.5), op.ms.Percentile(0.9));
      ok = ok && op.errors == 0;
    }
    int stalled = 0;
    for (const Pod& p : pods_) stalled += p.stalls > 0;
    std::printf("logs: %d of %zu pods' logs grew at every sample\n",
                static_cast<int>(pods_.size()) - stalled, pods_.size());
    ok = ok && stalled == 0;
    // The first sample is before any load; growth is judged from the first loaded one.
    if (samples_.size() > 2) {
      const Sample& a = samples_[1];
      const Sample& b = samples_.back();
      long rss_max = 0;
      int threads_max = 0, fds_max = 0;
      for (const Sample& x : samples_) {
        rss_max = std::max(rss_max, x.rss_kib);
        threads_max = std::max(threads_max, x.threads);
        fds_max = std::max(fds_max, x.fds);
      }
      std::printf(
          "podvisord from minute %.1f to %.1f: RSS %.1f -> %.1f MiB (max %.1f), threads %d -> %d "
          "(max %d), fds %d -> %d (max %d)\n",
          a.minute, b.minute, a.rss_kib / 1024.0, b.rss_kib / 1024.0, rss_max / 1024.0, a.threads,
          b.threads, threads_max, a.fds, b.fds, fds_max);
    }
    return ok;
  }

  std::vector<std::string> Leaks() {
    std::vector<std::string> leaks = PodsLeftBehind(*cri_, dir_);
    for (absl::string_view line : absl::StrSplit(Slurp("/proc/self/mountinfo"), '\n')) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      if (f.size() > 4 && f[4].rfind(dir_.path(), 0) == 0) leaks.push_back("mount " + f[4]);
    }
    return leaks;
  }

  int Finish(bool ok) {
    if (cri_) {
      for (const Pod& p : pods_) {
        v1::StopPodSandboxRequest stop;
        stop.set_pod_sandbox_id(p.id);
        v1::StopPodSandboxResponse stopped;
        (void)cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped);
        v1::RemovePodSandboxRequest remove;
        remove.set_pod_sandbox_id(p.id);
        v1::RemovePodSandboxResponse removed;
        (void)cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), remove, &removed);
      }
      const std::vector<std::string> leaks = Leaks();
      for (const std::string& l : leaks) std::printf("leak: %s\n", l.c_str());
      std::printf("after removing every pod: %zu leaks\n", leaks.size());
      ok = ok && leaks.empty();
    }
    if (daemon_) daemon_->Stop();
    (void)::system(absl::StrCat("ip link del ", bridge_, " 2>/dev/null").c_str());
    if (!template_dir_.empty()) fs::remove_all(template_dir_);
    std::printf("soak %s; load at the end %s", ok ? "passed" : "FAILED",
                Slurp("/proc/loadavg").c_str());
    return ok ? 0 : 1;
  }

  struct Op {
    Series ms;
    int errors = 0;
  };

  const int minutes_;
  const int pod_count_;
  TempDir dir_;
  LocalRegistry registry_{dir_.Join("registry"), {}};
  std::string error_;
  std::string bridge_;
  std::string template_dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
  std::vector<Pod> pods_;
  std::vector<Sample> samples_;
  std::mutex mu_;
  std::map<std::string, Op> ops_;
  std::atomic<int> churn_{0};
};

}  // namespace
}  // namespace podvisor::testing

int main(int argc, char** argv) {
  const int minutes = argc > 1 ? std::max(1, std::atoi(argv[1])) : 30;
  const int pods = argc > 2 ? std::max(1, std::atoi(argv[2])) : 20;
  return podvisor::testing::Soak(minutes, pods).Run();
}
