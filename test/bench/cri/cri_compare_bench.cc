// The same CRI call sequence, through the project's own CRI client, against podvisord and
// against Debian's containerd + runc, alternating between the two in one run, so that the ratio
// of each operation is measured under the same load:
//   N x RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox;
//   N x CreateContainer, StartContainer, ContainerStatus, StopContainer, RemoveContainer (in one
//       pod per runtime);
//   N x ExecSync(`true`) in a running container;
//   N x a pod + container from scratch (RunPodSandbox, CreateContainer, StartContainer,
//       StopPodSandbox, RemovePodSandbox);
//   four pods removed as `crictl rmp -fa` does (StopPodSandbox + RemovePodSandbox each, against
//       crictl's default 2 s timeout per call).
// It prints the median and p90 of each operation for both runtimes and the ratio of the medians.
//
// containerd runs on a private root, state directory, socket and CNI configuration directory of
// the benchmark's own; both runtimes pull a busybox image (and containerd its pause image) from a
// docker-registry on loopback. podvisord clones its pods from a template (the default): the
// bench waits for the daemon's first template before measuring and counts pods that booted cold
// instead. At the end it prints where podvisor's container calls spend their time: the median of
// each step the daemon logged at debug level (its own steps of CreateContainer, and the guest's
// step timings of each agent call). Run as root with the guest image built:
//
//   usage: cri_compare_bench [iterations=10]
//   PODVISOR_BENCH_INITRD=<file>: boot podvisor's pods with this initrd (e.g. another agent)

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
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
constexpr char kImage[] = "docker.io/library/busybox:bench";
constexpr char kPauseImage[] = "docker.io/library/pause:bench";
constexpr int kCrictlTimeoutMs = 2000;  // crictl's default --timeout


// Undoes what Main started (runtimes, their pods, bridges) when a step fails.
std::function<void()> g_cleanup;

[[noreturn]] void Die(const std::string& what, const std::string& why) {
  std::fprintf(stderr, "%s: %s\n", what.c_str(), why.c_str());
  if (auto cleanup = std::exchange(g_cleanup, nullptr)) cleanup();
  std::exit(1);
}

void Check(const std::string& what, const grpc::Status& s) {
  if (!s.ok()) Die(what, s.error_message());
}


// One runtime under test: its CRI client and the figures measured against it.
struct Runtime {
  std::string name;
  std::unique_ptr<CriClient> cri;
  std::string log_dir;
  std::map<std::string, Series> figures;
  int pods = 0;               // for unique pod names
  int cold_pods = 0;          // podvisor: pods that were not cloned from a template
  double rmp_slowest_ms = 0;  // RemoveFourLikeCrictl
  int rmp_over = 0;

  void Record(const std::string& op, double ms) { figures[op].ms.push_back(ms); }

  v1::PodSandboxConfig PodConfig(const std::string& prefix) {
    v1::PodSandboxConfig c;
    std::string name = absl::StrCat(prefix, pods++);
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("bench");
    c.mutable_metadata()->set_uid("uid-" + name);
    c.set_hostname(name);
    c.set_log_directory(absl::StrCat(log_dir, "/", name));
    c.mutable_linux();
    return c;
  }

  std::string RunPod(const v1::PodSandboxConfig& config, int timeout_s = 300) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    v1::RunPodSandboxResponse resp;
    Check(name + " RunPodSandbox",
          cri->runtime().RunPodSandbox(CriClient::Context(timeout_s).get(), req, &resp));
    return resp.pod_sandbox_id();
  }
  // podvisor: whether the pod's VM was cloned from a template (its verbose status says).
  bool Cloned(const std::string& id) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    req.set_verbose(true);
    v1::PodSandboxStatusResponse resp;
    Check(name + " PodSandboxStatus",
          cri->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp));
    if (resp.info().count("info") == 0) return false;
    nlohmann::json info = nlohmann::json::parse(resp.info().at("info"), nullptr, false);
    return info.is_object() && info.contains("vm") && info["vm"].is_object() &&
           info["vm"].value("template", "") != "";
  }
  grpc::Status StopPod(const std::string& id, int timeout_s = 120) {
    v1::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::StopPodSandboxResponse resp;
    return cri->runtime().StopPodSandbox(CriClient::Context(timeout_s).get(), req, &resp);
  }
  grpc::Status RemovePod(const std::string& id, int timeout_s = 120) {
    v1::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::RemovePodSandboxResponse resp;
    return cri->runtime().RemovePodSandbox(CriClient::Context(timeout_s).get(), req, &resp);
  }
  std::string CreateContainer(const std::string& pod, const v1::PodSandboxConfig& config,
                              const std::string& cname) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    req.mutable_config()->mutable_metadata()->set_name(cname);
    req.mutable_config()->mutable_image()->set_image(kImage);
    req.mutable_config()->add_command("sleep");
    req.mutable_config()->add_command("1000");
    req.mutable_config()->set_log_path(cname + ".log");
    *req.mutable_sandbox_config() = config;
    v1::CreateContainerResponse resp;
    Check(name + " CreateContainer",
          cri->runtime().CreateContainer(CriClient::Context(120).get(), req, &resp));
    return resp.container_id();
  }
  void StartContainer(const std::string& id) {
    v1::StartContainerRequest req;
    req.set_container_id(id);
    v1::StartContainerResponse resp;
    Check(name + " StartContainer",
          cri->runtime().StartContainer(CriClient::Context(120).get(), req, &resp));
  }
  void Pull(const std::string& image) {
    v1::PullImageRequest req;
    req.mutable_image()->set_image(image);
    v1::PullImageResponse resp;
    Check(name + " PullImage " + image,
          cri->image().PullImage(CriClient::Context(300).get(), req, &resp));
  }
};

// RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox of an empty pod.
void PodLifecycle(Runtime& rt) {
  v1::PodSandboxConfig config = rt.PodConfig("pod");
  std::string id;
  rt.Record("RunPodSandbox", Timed([&] { id = rt.RunPod(config); }));
  if (rt.name == "podvisor" && !rt.Cloned(id)) ++rt.cold_pods;
  rt.Record("PodSandboxStatus", Timed([&] {
              v1::PodSandboxStatusRequest req;
              req.set_pod_sandbox_id(id);
              v1::PodSandboxStatusResponse resp;
              Check(rt.name + " PodSandboxStatus",
                    rt.cri->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp));
            }));
  rt.Record("StopPodSandbox", Timed([&] { Check(rt.name + " StopPodSandbox", rt.StopPod(id)); }));
  rt.Record("RemovePodSandbox",
            Timed([&] { Check(rt.name + " RemovePodSandbox", rt.RemovePod(id)); }));
}

// Create, Start, Status, Stop(0), Remove of one container in the runtime's running pod.
void ContainerLifecycle(Runtime& rt, const std::string& pod, const v1::PodSandboxConfig& config,
                        int i) {
  std::string id;
  rt.Record("CreateContainer",
            Timed([&] { id = rt.CreateContainer(pod, config, absl::StrCat("c", i)); }));
  rt.Record("StartContainer", Timed([&] { rt.StartContainer(id); }));
  rt.Record("ContainerStatus", Timed([&] {
              v1::ContainerStatusRequest req;
              req.set_container_id(id);
              v1::ContainerStatusResponse resp;
              Check(rt.name + " ContainerStatus",
                    rt.cri->runtime().ContainerStatus(CriClient::Context().get(), req, &resp));
            }));
  rt.Record("StopContainer(0)", Timed([&] {
              v1::StopContainerRequest req;
              req.set_container_id(id);
              req.set_timeout(0);
              v1::StopContainerResponse resp;
              Check(rt.name + " StopContainer",
                    rt.cri->runtime().StopContainer(CriClient::Context(120).get(), req, &resp));
            }));
  rt.Record("RemoveContainer", Timed([&] {
              v1::RemoveContainerRequest req;
              req.set_container_id(id);
              v1::RemoveContainerResponse resp;
              Check(rt.name + " RemoveContainer",
                    rt.cri->runtime().RemoveContainer(CriClient::Context(120).get(), req, &resp));
            }));
}

void ExecTrue(Runtime& rt, const std::string& container) {
  v1::ExecSyncRequest req;
  req.set_container_id(container);
  req.add_cmd("true");
  req.set_timeout(60);
  v1::ExecSyncResponse resp;
  rt.Record("ExecSync(true)", Timed([&] {
              Check(rt.name + " ExecSync",
                    rt.cri->runtime().ExecSync(CriClient::Context(120).get(), req, &resp));
            }));
  if (resp.exit_code() != 0)
    Die(rt.name + " ExecSync", "exit code " + std::to_string(resp.exit_code()));
}

// critest's "pod + container from scratch": RunPodSandbox, CreateContainer, StartContainer,
// StopPodSandbox, RemovePodSandbox.
void FromScratch(Runtime& rt) {
  rt.Record("pod + container from scratch", Timed([&] {
              v1::PodSandboxConfig config = rt.PodConfig("scratch");
              std::string pod = rt.RunPod(config);
              rt.StartContainer(rt.CreateContainer(pod, config, "app"));
              Check(rt.name + " StopPodSandbox", rt.StopPod(pod));
              Check(rt.name + " RemovePodSandbox", rt.RemovePod(pod));
            }));
}

// Four pods removed the way `crictl rmp -fa` does: StopPodSandbox then RemovePodSandbox of each,
// every call under crictl's 2 s timeout. Records the slowest call and counts calls over it.
void RemoveFourLikeCrictl(Runtime& rt) {
  std::vector<std::string> pods;
  for (int i = 0; i < 4; ++i) pods.push_back(rt.RunPod(rt.PodConfig("rmp")));
  double slowest = 0;
  int over = 0;
  for (const std::string& pod : pods) {
    for (int step = 0; step < 2; ++step) {
      grpc::Status s;
      double ms = Timed([&] {
        s = step == 0 ? rt.StopPod(pod, kCrictlTimeoutMs / 1000)
                      : rt.RemovePod(pod, kCrictlTimeoutMs / 1000);
      });
      slowest = std::max(slowest, ms);
      if (!s.ok()) {
        ++over;
        // Finish the job without crictl's bound, so nothing is left behind.
        Check(rt.name + " stop/remove after a timeout",
              step == 0 ? rt.StopPod(pod) : rt.RemovePod(pod));
      }
    }
  }
  rt.rmp_slowest_ms = slowest;
  rt.rmp_over = over;
}

// The pause image containerd runs as each pod's sandbox container: busybox sleeping, an image
// config of its own (OciLayout::AddImage's runs /bin/sh, which would exit at once).
nlohmann::json AddPauseImage(OciLayout& layout, const OciLayout::Layer& layer) {
  nlohmann::json config = {{"architecture", "amd64"},
                           {"os", "linux"},
                           {"config", {{"Entrypoint", {"/bin/sleep", "2147483647"}}}},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", {layer.diff_id}}}}};
  std::string config_bytes = config.dump();
  std::string layer_digest = layout.AddBlob(layer.blob);
  nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
        {"digest", layout.AddBlob(config_bytes)},
        {"size", config_bytes.size()}}},
      {"layers",
       {{{"mediaType", layer.media_type}, {"digest", layer_digest}, {"size", layer.blob.size()}}}}};
  std::string bytes = manifest.dump();
  return {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
          {"digest", layout.AddBlob(bytes)},
          {"size", bytes.size()},
          {"platform", {{"architecture", "amd64"}, {"os", "linux"}}}};
}

// Pushes busybox:bench and pause:bench to the registry.
void PushImages(const TempDir& dir, const LocalRegistry& registry) {
  OciLayout layout(dir.Join("layout"));
  OciLayout::Layer layer = BusyboxLayer();
  layout.Tag("bench", layout.AddImage({layer}));
  layout.Tag("pause", AddPauseImage(layout, layer));
  for (const auto& [tag, dest] :
       {std::pair<std::string, std::string>{"bench", "busybox:bench"}, {"pause", "pause:bench"}}) {
    if (std::string e = Push(layout, tag, registry.host() + "/library/" + dest); !e.empty()) {
      Die("push " + dest, e);
    }
  }
}

// A CNI network of its own for one runtime: a bridge and subnet, IPAM state in `dir`.
void WriteCniConfig(const std::string& conf_dir, const std::string& bridge, int subnet,
                    const std::string& ipam_dir) {
  std::filesystem::create_directories(conf_dir);
  std::ofstream(conf_dir + "/10-bench.conflist")
      << absl::StrCat(R"({"cniVersion": "1.0.0", "name": ")", bridge, R"(",
 "plugins": [{"type": "bridge", "bridge": ")",
                      bridge, R"(", "isGateway": true,
   "ipam": {"type": "host-local", "dataDir": ")",
                      ipam_dir, R"(",
            "ranges": [[{"subnet": "10.)",
                      subnet, R"(.0.0/24"}]]}}, {"type": "loopback"}]})");
}

// containerd's config: every path private to the benchmark, the CRI plugin's registry mirror
// on loopback, its pause image from there, its stream server on a free loopback port.
std::string ContainerdConfig(const TempDir& dir, const std::string& registry) {
  return absl::StrCat(R"(version = 2
root = ")",
                      dir.Join("ctd-root"), R"("
state = ")",
                      dir.Join("ctd-state"), R"("
[grpc]
  address = ")",
                      dir.Join("ctd.sock"), R"("
[ttrpc]
  address = ")",
                      dir.Join("ctd-ttrpc.sock"), R"("
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = ")",
                      dir.Join("ctd-opt"), R"("
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ")",
                      kPauseImage, R"("
  # Hosts that forbid lowering oom_score_adj refuse containerd's -998 for sandboxes.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = ")",
                      dir.Join("ctd-cni"), R"("
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://)",
                      registry, R"("]
)");
}

// Waits for a CRI endpoint to answer Version.
bool WaitForCri(CriClient& cri, int timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    v1::VersionRequest req;
    v1::VersionResponse resp;
    if (cri.runtime().Version(CriClient::Context(2).get(), req, &resp).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// The median of each step podvisord logged at debug level: "create container <id>: <step> <ms>
// ms, ...", "layer disk <serial>: hot-plug <ms> ms, guest mount <ms> ms" and "agent <Call> in the
// guest: <step> <ms> ms, ...".
void PrintStepBreakdown(const std::string& log) {
  std::map<std::string, Series> steps;
  auto add = [&](const std::string& prefix, std::string list) {
    // Entries end in " ms"; step names may hold commas, so split at " ms, ".
    if (list.size() >= 3 && list.compare(list.size() - 3, 3, " ms") == 0)
      list.resize(list.size() - 3);
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t end = list.find(" ms, ", pos);
      if (end == std::string::npos) end = list.size();
      const std::string entry = list.substr(pos, end - pos);
      const size_t space = entry.rfind(' ');
      if (space != std::string::npos) {
        steps[prefix + entry.substr(0, space)].ms.push_back(std::atof(entry.c_str() + space + 1));
      }
      pos = end + 5;
    }
  };
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    size_t at;
    if ((at = line.find(" in the guest: ")) != std::string::npos) {
      const size_t call = line.rfind("agent ", at);
      if (call == std::string::npos) continue;
      add(line.substr(call + 6, at - call - 6) + " (guest): ", line.substr(at + 15));
    } else if ((at = line.find("create container ")) != std::string::npos &&
               line.find(" ms") != std::string::npos && line.find(": ", at) != std::string::npos) {
      add("CreateContainer (podvisord): ", line.substr(line.find(": ", at) + 2));
    } else if ((at = line.find(": hot-plug ")) != std::string::npos) {
      add("layer disk: ", line.substr(at + 2));
    }
  }
  if (steps.empty()) return;
  std::printf(
      "\npodvisor, where the container calls spend their time (median / p90 of each step):\n");
  for (const auto& [step, series] : steps) {
    std::printf("  %-64s %9.1f / %9.1f ms  (n=%zu)\n", step.c_str(), series.Percentile(0.5),
                series.Percentile(0.9), series.ms.size());
  }
}

void PrintTable(const std::vector<Runtime*>& rts) {
  Runtime& base = *rts[0];
  Runtime& ours = *rts[1];
  std::printf("\n%-36s %22s %22s %8s\n", "operation (ms)", "containerd+runc med/p90",
              "podvisor med/p90", "ratio");
  for (const auto& [op, series] : ours.figures) {
    const Series& b = base.figures[op];
    double ratio = b.Percentile(0.5) > 0 ? series.Percentile(0.5) / b.Percentile(0.5) : 0;
    std::printf("%-36s %12.1f /%8.1f %12.1f /%8.1f %7.1fx  (n=%zu)\n", op.c_str(),
                b.Percentile(0.5), b.Percentile(0.9), series.Percentile(0.5),
                series.Percentile(0.9), ratio, series.ms.size());
  }
  std::printf("podvisor: %d of the measured pods booted cold (not cloned from a template)\n",
              ours.cold_pods);
  for (const Runtime* rt : rts) {
    std::printf(
        "%s: crictl rmp -fa of 4 pods: slowest Stop/RemovePodSandbox %.1f ms, %d of 8 "
        "calls over crictl's %d ms timeout\n",
        rt->name.c_str(), rt->rmp_slowest_ms, rt->rmp_over, kCrictlTimeoutMs);
  }
}

int Main(int argc, char** argv) {
  const int n = argc > 1 ? std::max(1, std::atoi(argv[1])) : 10;
  TempDir dir;
  LocalRegistry registry(dir.Join("registry"), {});
  std::string error;
  if (!registry.Start(&error)) Die("registry", error);
  PushImages(dir, registry);

  const int net = getpid() % 50;  // subnets 10.150-199.x (containerd), 10.200-249.x (podvisor)
  const std::string pv_bridge = absl::StrCat("pvcmp", getpid() % 100000);
  const std::string ctd_bridge = absl::StrCat("ctcmp", getpid() % 100000);
  WriteCniConfig(dir.Join("pv-cni"), pv_bridge, 200 + net, dir.Join("pv-ipam"));
  WriteCniConfig(dir.Join("ctd-cni"), ctd_bridge, 150 + net, dir.Join("ctd-ipam"));

  const std::string template_dir = MakeTemplateDir("podvisor-compare-templates");
  if (template_dir.empty()) Die("template dir", "cannot make one under /dev/shm");
  const char* initrd = std::getenv("PODVISOR_BENCH_INITRD");
  std::ofstream(dir.Join("config.yaml"))
      << "hypervisor: {accel: tcg, templates: true, template_dir: " << template_dir
      << (initrd != nullptr ? absl::StrCat(", initrd: ", initrd) : "") << "}\n"
      << "cni: {conf_dir: " << dir.Join("pv-cni") << "}\n"
      << "registry:\n  hosts:\n    docker.io:\n      mirrors: [\"http://" << registry.host()
      << "\"]\n";
  DaemonProcess::Options o;
  o.root_dir = dir.Join("pv-root");
  o.state_dir = dir.Join("pv-st");
  o.socket_path = dir.Join("pv.sock");
  o.config_path = dir.Join("config.yaml");
  o.log_path = dir.Join("podvisord.log");
  o.log_level = "debug";  // the step timings of the container calls
  DaemonProcess podvisord(o);
  if (!podvisord.Start(&error)) Die("podvisord", error);
  g_cleanup = [&] {
    podvisord.Stop();
    std::filesystem::remove_all(template_dir);
  };
  const double template_s = WaitForTemplate(template_dir, 1800);
  if (template_s < 0) Die("podvisord", "no template was built; see " + dir.Join("podvisord.log"));
  std::printf("podvisord's template ready %.1f s after its start\n", template_s);

  std::ofstream(dir.Join("containerd.toml")) << ContainerdConfig(dir, registry.host());
  ChildProcess containerd;
  if (!containerd.Start({"containerd", "--config", dir.Join("containerd.toml")},
                        dir.Join("containerd.log"))) {
    Die("containerd", "cannot start");
  }
  g_cleanup = [&] {
    podvisord.Stop();
    containerd.Kill();
    std::filesystem::remove_all(template_dir);
  };
  Runtime ctd{"containerd",
              std::make_unique<CriClient>("unix://" + dir.Join("ctd.sock")),
              dir.Join("ctd-logs"),
              {}};
  Runtime pv{
      "podvisor", std::make_unique<CriClient>(podvisord.endpoint()), dir.Join("pv-logs"), {}};
  if (!WaitForCri(*ctd.cri, 60))
    Die("containerd", "no CRI answer; see " + dir.Join("containerd.log"));
  std::vector<Runtime*> rts = {&ctd, &pv};
  auto cleanup = [&] {
    // Every pod of each runtime, whatever a failed step left.
    for (Runtime* rt : rts) {
      v1::ListPodSandboxResponse list;
      if (rt->cri->runtime().ListPodSandbox(CriClient::Context().get(), {}, &list).ok()) {
        for (const auto& p : list.items()) {
          (void)rt->StopPod(p.id());
          (void)rt->RemovePod(p.id());
        }
      }
    }
    podvisord.Stop();
    containerd.Kill();
    std::filesystem::remove_all(template_dir);
    (void)::system(absl::StrCat("ip link del ", pv_bridge, " 2>/dev/null; ip link del ", ctd_bridge,
                                " 2>/dev/null")
                       .c_str());
    // containerd's mounts of its own snapshots, if a failure left any.
    (void)::system(absl::StrCat("grep -o ' ", dir.path(), "[^ ]*' /proc/mounts | sort -r | ",
                                "xargs -r -n1 umount -l 2>/dev/null")
                       .c_str());
  };
  g_cleanup = [&] {
    std::printf("(a step failed: the figures measured until then)\n");
    PrintTable(rts);
    PrintStepBreakdown(podvisord.ReadLog());
    cleanup();
  };
  for (Runtime* rt : rts) {
    rt->Pull(kImage);
    if (rt == &ctd) rt->Pull(kPauseImage);
    // Warm-up, not measured: podvisord waits for its hypervisor, containerd loads its plugins.
    std::string warm = rt->RunPod(rt->PodConfig("warm"));
    Check(rt->name + " warm-up StopPodSandbox", rt->StopPod(warm));
    Check(rt->name + " warm-up RemovePodSandbox", rt->RemovePod(warm));
  }
  // Alternate which runtime goes first, so that neither always runs right after the other.
  auto each = [&](int i, const std::function<void(Runtime&)>& fn) {
    fn(i % 2 == 0 ? ctd : pv);
    fn(i % 2 == 0 ? pv : ctd);
  };
  for (int i = 0; i < n; ++i) each(i, PodLifecycle);

  std::map<Runtime*, std::pair<std::string, v1::PodSandboxConfig>> pods;
  std::map<Runtime*, std::string> sleepers;
  for (Runtime* rt : rts) {
    v1::PodSandboxConfig config = rt->PodConfig("ctr");
    std::string pod = rt->RunPod(config);
    pods[rt] = {pod, config};
    // A container that stays: the image is in use in the pod, as in a real pod's life.
    sleepers[rt] = rt->CreateContainer(pod, config, "sleeper");
    rt->StartContainer(sleepers[rt]);
  }
  for (int i = 0; i < n; ++i) {
    each(i, [&](Runtime& rt) { ContainerLifecycle(rt, pods[&rt].first, pods[&rt].second, i); });
  }
  for (int i = 0; i < n; ++i) each(i, [&](Runtime& rt) { ExecTrue(rt, sleepers[&rt]); });
  for (Runtime* rt : rts) {
    Check(rt->name + " StopPodSandbox", rt->StopPod(pods[rt].first));
    Check(rt->name + " RemovePodSandbox", rt->RemovePod(pods[rt].first));
  }
  for (int i = 0; i < n; ++i) each(i, FromScratch);
  for (Runtime* rt : rts) RemoveFourLikeCrictl(*rt);

  PrintTable(rts);
  PrintStepBreakdown(podvisord.ReadLog());
  g_cleanup = nullptr;
  cleanup();
  return 0;
}

}  // namespace
}  // namespace podvisor::testing

int main(int argc, char** argv) { return podvisor::testing::Main(argc, argv); }
