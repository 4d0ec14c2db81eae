// What a container costs through the real podvisord, in one pod VM (TCG): CreateContainer
// (first container: the image's layer disks are hot-plugged; later ones reuse them),
// StartContainer, ExecSync(`true`), and StopContainer(0)+RemoveContainer, median and p90 of N;
// then the rate at which a container's output reaches its log file (one container writing 16 MB
// of 41-byte lines as fast as it can).
// The image is a one-layer busybox pushed to a docker-registry on loopback.
//
// usage: container_bench [iterations=10] [execs=20]   (root; the guest image built)

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "test/bench/support/bench_support.h"
#include "test/support/daemon_process.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

namespace v1 = runtime::v1;
constexpr char kImage[] = "docker.io/library/busybox:bench";


void Die(const std::string& what, const grpc::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what.c_str(), s.error_message().c_str());
  std::exit(1);
}


// The last `n` bytes of a file.
std::string Tail(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  const std::streamoff size = f.tellg();
  if (size <= 0) return "";
  f.seekg(std::max<std::streamoff>(0, size - static_cast<std::streamoff>(n)));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Starts a container writing 400000 lines of 41 bytes and returns MB/s of content from
// StartContainer until its last line is in the log file.
double LogThroughput(CriClient& cri, const std::string& pod, const v1::PodSandboxConfig& config,
                     const std::string& log) {
  constexpr int kLines = 400000;
  v1::CreateContainerRequest req;
  req.set_pod_sandbox_id(pod);
  req.mutable_config()->mutable_metadata()->set_name("flood");
  req.mutable_config()->mutable_image()->set_image(kImage);
  for (const char* a : {"sh", "-c"}) req.mutable_config()->add_command(a);
  req.mutable_config()->add_command(absl::StrCat(
      "yes 0123456789012345678901234567890123456789 | head -n ", kLines, "; echo end"));
  req.mutable_config()->set_log_path("flood.log");
  *req.mutable_sandbox_config() = config;
  v1::CreateContainerResponse created;
  if (auto s = cri.runtime().CreateContainer(CriClient::Context(120).get(), req, &created);
      !s.ok()) {
    Die("CreateContainer", s);
  }
  v1::StartContainerRequest sreq;
  sreq.set_container_id(created.container_id());
  v1::StartContainerResponse sresp;
  const auto start = std::chrono::steady_clock::now();
  if (auto s = cri.runtime().StartContainer(CriClient::Context(120).get(), sreq, &sresp); !s.ok()) {
    Die("StartContainer", s);
  }
  while (Tail(log, 64).find(" stdout F end\n") == std::string::npos) {
    if (std::chrono::steady_clock::now() - start > std::chrono::minutes(10)) {
      std::fprintf(stderr, "the log never ended\n");
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return kLines * 41.0 / 1e6 / seconds;
}

int Main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 10;
  const int execs = argc > 2 ? std::atoi(argv[2]) : 20;
  TempDir dir;
  LocalRegistry registry(dir.Join("registry"), {});
  std::string error;
  if (!registry.Start(&error)) {
    std::fprintf(stderr, "registry: %s\n", error.c_str());
    return 1;
  }
  OciLayout layout(dir.Join("layout"));
  layout.Tag("bench", layout.AddImage({BusyboxLayer()}));
  if (std::string e = Push(layout, "bench", registry.host() + "/library/busybox:bench");
      !e.empty()) {
    std::fprintf(stderr, "push: %s\n", e.c_str());
    return 1;
  }
  std::ofstream(dir.Join("cni.conflist")) << R"({"cniVersion": "1.0.0", "name": "pvcbench",
 "plugins": [{"type": "bridge", "bridge": "pvcbench0", "isGateway": true,
   "ipam": {"type": "host-local", "dataDir": ")"
                                          << dir.Join("ipam") << R"(",
            "ranges": [[{"subnet": "10.217.0.0/24"}]]}}, {"type": "loopback"}]})";
  std::ofstream(dir.Join("config.yaml"))
      << "hypervisor: {accel: tcg}\ncni: {conf_dir: " << dir.path() << "}\n"
      << "registry:\n  hosts:\n    docker.io:\n      mirrors: [\"http://" << registry.host()
      << "\"]\n";
  DaemonProcess::Options o;
  o.root_dir = dir.Join("root");
  o.state_dir = dir.Join("st");
  o.socket_path = dir.Join("pv.sock");
  o.config_path = dir.Join("config.yaml");
  o.extra_args = {"--log-level", "info"};
  DaemonProcess daemon(o);
  if (!daemon.Start(&error)) {
    std::fprintf(stderr, "podvisord: %s\n", error.c_str());
    return 1;
  }
  CriClient cri(daemon.endpoint());
  v1::PullImageRequest pull;
  pull.mutable_image()->set_image(kImage);
  v1::PullImageResponse pulled;
  if (auto s = cri.image().PullImage(CriClient::Context(300).get(), pull, &pulled); !s.ok()) {
    Die("PullImage", s);
  }
  v1::RunPodSandboxRequest run;
  run.mutable_config()->mutable_metadata()->set_name("bench");
  run.mutable_config()->mutable_metadata()->set_namespace_("bench");
  run.mutable_config()->mutable_metadata()->set_uid("uid-bench");
  run.mutable_config()->set_log_directory(dir.Join("logs"));
  v1::RunPodSandboxResponse ran;
  if (auto s = cri.runtime().RunPodSandbox(CriClient::Context(300).get(), run, &ran); !s.ok()) {
    Die("RunPodSandbox", s);
  }
  const std::string pod = ran.pod_sandbox_id();

  Series create, start, exec, stop_remove, container_stats, pod_stats, update;
  double first_create = 0;
  for (int i = 0; i < iterations; ++i) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    req.mutable_config()->mutable_metadata()->set_name(absl::StrCat("c", i));
    req.mutable_config()->mutable_image()->set_image(kImage);
    req.mutable_config()->add_command("sleep");
    req.mutable_config()->add_command("1000");
    req.mutable_config()->set_log_path(absl::StrCat("c", i, ".log"));
    *req.mutable_sandbox_config() = run.config();
    v1::CreateContainerResponse created;
    double ms = Timed([&] {
      if (auto s = cri.runtime().CreateContainer(CriClient::Context(120).get(), req, &created);
          !s.ok()) {
        Die("CreateContainer", s);
      }
    });
    // A container that outlives the loop keeps the layer attached: later creates reuse it.
    if (i == 0) {
      first_create = ms;
    } else {
      create.ms.push_back(ms);
    }
    const std::string id = created.container_id();
    v1::StartContainerRequest sreq;
    sreq.set_container_id(id);
    v1::StartContainerResponse sresp;
    start.ms.push_back(Timed([&] {
      if (auto s = cri.runtime().StartContainer(CriClient::Context(120).get(), sreq, &sresp);
          !s.ok()) {
        Die("StartContainer", s);
      }
    }));
    if (i == 0) {
      for (int j = 0; j < execs; ++j) {
        v1::ExecSyncRequest ereq;
        ereq.set_container_id(id);
        ereq.add_cmd("true");
        ereq.set_timeout(60);
        v1::ExecSyncResponse eresp;
        exec.ms.push_back(Timed([&] {
          if (auto s = cri.runtime().ExecSync(CriClient::Context(120).get(), ereq, &eresp);
              !s.ok()) {
            Die("ExecSync", s);
          }
        }));
      }
      // Stats and resource updates on the running c0, next to ContainerStats as the baseline.
      for (int j = 0; j < execs; ++j) {
        v1::ContainerStatsRequest csreq;
        csreq.set_container_id(id);
        v1::ContainerStatsResponse csresp;
        container_stats.ms.push_back(Timed([&] {
          if (auto s = cri.runtime().ContainerStats(CriClient::Context(60).get(), csreq, &csresp);
              !s.ok()) {
            Die("ContainerStats", s);
          }
        }));
        v1::PodSandboxStatsRequest psreq;
        psreq.set_pod_sandbox_id(pod);
        v1::PodSandboxStatsResponse psresp;
        pod_stats.ms.push_back(Timed([&] {
          if (auto s = cri.runtime().PodSandboxStats(CriClient::Context(60).get(), psreq, &psresp);
              !s.ok()) {
            Die("PodSandboxStats", s);
          }
        }));
        v1::UpdateContainerResourcesRequest ureq;
        ureq.set_container_id(id);
        ureq.mutable_linux()->set_memory_limit_in_bytes((j % 2 ? 96 : 128) << 20);
        ureq.mutable_linux()->set_cpu_quota(j % 2 ? 50000 : 100000);
        ureq.mutable_linux()->set_cpu_period(100000);
        v1::UpdateContainerResourcesResponse uresp;
        update.ms.push_back(Timed([&] {
          if (auto s = cri.runtime().UpdateContainerResources(CriClient::Context(60).get(), ureq,
                                                              &uresp);
              !s.ok()) {
            Die("UpdateContainerResources", s);
          }
        }));
      }
      continue;  // c0 stays
    }
    stop_remove.ms.push_back(Timed([&] {
      v1::StopContainerRequest st;
      st.set_container_id(id);
      st.set_timeout(0);
      v1::StopContainerResponse str;
      if (auto s = cri.runtime().StopContainer(CriClient::Context(120).get(), st, &str); !s.ok()) {
        Die("StopContainer", s);
      }
      v1::RemoveContainerRequest rm;
      rm.set_container_id(id);
      v1::RemoveContainerResponse rmr;
      if (auto s = cri.runtime().RemoveContainer(CriClient::Context(120).get(), rm, &rmr);
          !s.ok()) {
        Die("RemoveContainer", s);
      }
    }));
  }
  const double log_mb = LogThroughput(cri, pod, run.config(), dir.Join("logs/flood.log"));
  std::printf("first CreateContainer in the pod (hot-plugs the layer disk): %.1f ms\n",
              first_create);
  create.Print("CreateContainer (layer disk already attached)");
  start.Print("StartContainer");
  exec.Print("ExecSync(true)");
  stop_remove.Print("StopContainer(0) + RemoveContainer");
  container_stats.Print("ContainerStats (baseline)");
  pod_stats.Print("PodSandboxStats");
  update.Print("UpdateContainerResources (memory, cpu)");
  std::printf("container output to its log file: %.2f MB/s of content\n", log_mb);
  v1::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod);
  v1::RemovePodSandboxResponse rmr;
  (void)cri.runtime().RemovePodSandbox(CriClient::Context(120).get(), rm, &rmr);

  // A pod and its container from scratch, as kubelet starts one: RunPodSandbox, CreateContainer,
  // StartContainer, until the container's first output line is in its log file on the host.
  // Baseline in the same run: the CRI Version round trip.
  Series version, scratch, scratch_runp;
  for (int i = 0; i < 20; ++i) {
    v1::VersionRequest vreq;
    v1::VersionResponse vresp;
    version.ms.push_back(Timed([&] {
      if (auto s = cri.runtime().Version(CriClient::Context().get(), vreq, &vresp); !s.ok()) {
        Die("Version", s);
      }
    }));
  }
  for (int i = 0; i < std::max(iterations / 2, 3); ++i) {
    v1::RunPodSandboxRequest prun = run;
    prun.mutable_config()->mutable_metadata()->set_name(absl::StrCat("scratch", i));
    prun.mutable_config()->mutable_metadata()->set_uid(absl::StrCat("uid-scratch", i));
    const std::string log = dir.Join(absl::StrCat("logs/scratch", i, ".log"));
    const auto begin = std::chrono::steady_clock::now();
    v1::RunPodSandboxResponse pran;
    if (auto s = cri.runtime().RunPodSandbox(CriClient::Context(300).get(), prun, &pran);
        !s.ok()) {
      Die("RunPodSandbox", s);
    }
    scratch_runp.ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin)
            .count());
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pran.pod_sandbox_id());
    req.mutable_config()->mutable_metadata()->set_name("app");
    req.mutable_config()->mutable_image()->set_image(kImage);
    for (const char* a : {"sh", "-c", "echo started; exec sleep 1000"}) {
      req.mutable_config()->add_command(a);
    }
    req.mutable_config()->set_log_path(absl::StrCat("scratch", i, ".log"));
    *req.mutable_sandbox_config() = prun.config();
    v1::CreateContainerResponse created;
    if (auto s = cri.runtime().CreateContainer(CriClient::Context(120).get(), req, &created);
        !s.ok()) {
      Die("CreateContainer", s);
    }
    v1::StartContainerRequest sreq;
    sreq.set_container_id(created.container_id());
    v1::StartContainerResponse sresp;
    if (auto s = cri.runtime().StartContainer(CriClient::Context(120).get(), sreq, &sresp);
        !s.ok()) {
      Die("StartContainer", s);
    }
    bool seen = false;
    while (!seen && std::chrono::steady_clock::now() - begin < std::chrono::seconds(120)) {
      std::ifstream in(log);
      std::string line;
      seen = std::getline(in, line) && line.find(" F started") != std::string::npos;
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!seen) {
      std::fprintf(stderr, "no output from the scratch container in %s\n", log.c_str());
      return 1;
    }
    scratch.ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin)
            .count());
    v1::RemovePodSandboxRequest prm;
    prm.set_pod_sandbox_id(pran.pod_sandbox_id());
    (void)cri.runtime().RemovePodSandbox(CriClient::Context(120).get(), prm, &rmr);
  }
  version.Print("baseline: CRI Version round trip");
  scratch.Print("pod + container from scratch, to first log line");
  scratch_runp.Print("  of which RunPodSandbox");
  daemon.Stop();
  (void)::system("ip link del pvcbench0 2>/dev/null");
  return 0;
}

}  // namespace
}  // namespace podvisor::testing

int main(int argc, char** argv) { return podvisor::testing::Main(argc, argv); }
