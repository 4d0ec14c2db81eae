// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include "test/bench/support/bench_support.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace podvisor::testing {

double Series::Percentile(double p) const {
  if (ms.empty()) return 0;
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  return sorted[static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5)];
}

double Series::Sum() const {
  double total = 0;
  for (double v : ms) total += v;
  return total;
}

void Series::Print(const char* name) const {
  std::printf("%-44s median %8.1f ms   p90 %8.1f ms   (n=%zu)\n", name, Percentile(0.5),
              Percentile(0.9), ms.size());
}

namespace {

// The value of the first line of `path` whose first word is `key` ("Pss:", "MemAvailable:").
long KibField(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string word;
  while (in >> word) {
    if (word == key) {
      long value = -1;
      in >> value;
      return value;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

}  // namespace

long PssKib(int pid) { return KibField(absl::StrCat("/proc/", pid, "/smaps_rollup"), "Pss:"); }

long VirtiofsdPssKib(const std::string& id16) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const int pid = std::atoi(e.path().filename().c_str());
    if (pid <= 0) continue;
    std::ifstream in(e.path() / "cmdline");
    const std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find("virtiofsd") != std::string::npos && cmd.find(id16) != std::string::npos) {
      return PssKib(pid);
    }
  }
  return 0;
}

long MemAvailableKib() { return KibField("/proc/meminfo", "MemAvailable:"); }

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

OciLayout::Layer BusyboxLayer() {
  std::ifstream bb("/bin/busybox");
  std::stringstream busybox;
  busybox << bb.rdbuf();
  std::vector<TarEntry> entries = {Dir("bin"), File("bin/busybox", busybox.str(), 0755)};
  for (const char* applet : {"sh", "true", "sleep", "echo", "yes", "head"}) {
    entries.push_back(Symlink(absl::StrCat("bin/", applet), "busybox"));
  }
  return OciLayout::MakeLayer(entries, Compression::kGzip);
}

std::vector<std::string> PodsLeftBehind(CriClient& cri, const TempDir& dir) {
  namespace v1 = runtime::v1;
  std::vector<std::string> left;
  // QEMU exits a moment after its domain is destroyed.
  for (int i = 0; i < 50 && !QemuProcessesUnder(dir.path()).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (pid_t pid : QemuProcessesUnder(dir.path())) left.push_back(absl::StrCat("QEMU ", pid));
  v1::ListPodSandboxResponse pods;
  (void)cri.runtime().ListPodSandbox(CriClient::Context(60).get(), {}, &pods);
  for (const v1::PodSandbox& p : pods.items()) left.push_back("sandbox record " + p.id());
  v1::ListContainersResponse containers;
  (void)cri.runtime().ListContainers(CriClient::Context(60).get(), {}, &containers);
  for (const v1::Container& c : containers.containers()) {
    left.push_back("container record " + c.id());
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir.Join("st/vm"), ec)) {
    left.push_back("st/vm/" + e.path().filename().string());
  }
  return left;
}

DaemonProcess::Options WriteTemplateDaemonFiles(const TempDir& dir, const std::string& bridge,
                                                const std::string& subnet,
                                                const std::string& template_dir,
                                                const std::string& registry_host) {
  std::filesystem::create_directories(dir.Join("cni"));
  std::ofstream(dir.Join(absl::StrCat("cni/10-", bridge, ".conflist")))
      << absl::StrCat(R"({"cniVersion": "1.0.0", "name": ")", bridge, R"(",
 "plugins": [{"type": "bridge", "bridge": ")",
                      bridge, R"(", "isGateway": true,
   "ipam": {"type": "host-local", "dataDir": ")",
                      dir.Join("ipam"), R"(",
            "ranges": [[{"subnet": ")",
                      subnet, R"("}]]}}, {"type": "loopback"}]})");
  std::ofstream(dir.Join("config.yaml"))
      << "hypervisor: {accel: tcg, templates: true, template_dir: " << template_dir << "}\n"
      << "cni: {conf_dir: " << dir.Join("cni") << "}\n"
      << "registry:\n  hosts:\n    docker.io:\n      mirrors: [\"http://" << registry_host
      << "\"]\n";
  DaemonProcess::Options o;
  o.root_dir = dir.Join("root");
  o.state_dir = dir.Join("st");
  o.socket_path = dir.Join("pv.sock");
  o.config_path = dir.Join("config.yaml");
  o.log_path = dir.Join("podvisord.log");
  o.log_level = "info";
  return o;
}

}  // namespace podvisor::testing
