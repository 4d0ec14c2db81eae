#include "test/integration/network/test_network.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "test/integration/network/fake_guest.h"

namespace podvisor::testing {

namespace {

// Picks a /24 no other test process on this machine is using: each holds an flock on
// /tmp/podvisor-test-subnets/<n>.lock for its lifetime (the fd stays open until exit).
int ClaimSubnet() {
  const std::string dir = "/tmp/podvisor-test-subnets";
  (void)MakeDirs(dir, 0755);
  const int start = static_cast<int>(::getpid() % 240);
  for (int i = 0; i < 240; ++i) {
    int n = (start + i) % 240 + 10;
    std::string lock = absl::StrCat(dir, "/", n, ".lock");
    int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return n;  // fd deliberately kept
    ::close(fd);
  }
  return start + 10;
}

// Deletes pvt<pid> bridges left by test processes that died without cleaning up (a crash, a
// SIGKILL at a timeout): their address would shadow the subnet we are about to use.
void DeleteStaleBridges() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/net", ec)) {
    std::string name = e.path().filename();
    int pid = 0;
    if (name.rfind("pvt", 0) != 0 || !absl::SimpleAtoi(name.substr(3), &pid) || pid <= 0) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) (void)RunIp("", {"link", "del", name});
  }
}

}  // namespace

TestNetwork::TestNetwork() {
  static const bool cleaned = [] {
    DeleteStaleBridges();
    return true;
  }();
  (void)cleaned;
  static const int n = ClaimSubnet();
  bridge_ = absl::StrCat("pvt", ::getpid());
  subnet_ = absl::StrCat("10.213.", n, ".0/24");
  gateway_ = absl::StrCat("10.213.", n, ".1");
  subnet6_ = absl::StrCat("fd00:213:", n, "::/64");
  for (const char* path :
       {"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}) {
    absl::StatusOr<std::string> value = ReadFile(path);
    if (value.ok()) saved_sysctls_.emplace_back(path, *value);
  }
}

TestNetwork::~TestNetwork() {
  (void)RunIp("", {"link", "del", bridge_});
  // The bridge plugin turns on IP forwarding for its gateway; give the host back its settings.
  for (const auto& [path, value] : saved_sysctls_) std::ofstream(path) << value;
}

void TestNetwork::WriteConflist(const nlohmann::json& tail_plugins, bool dual_stack) {
  nlohmann::json ranges = {{{{"subnet", subnet_}}}};
  nlohmann::json routes = {{{"dst", "0.0.0.0/0"}}};
  if (dual_stack) {
    ranges.push_back({{{"subnet", subnet6_}}});
    routes.push_back({{"dst", "::/0"}});
  }
  nlohmann::json plugins = {
      {{"type", "bridge"},
       {"bridge", bridge_},
       {"isGateway", true},
       {"ipMasq", false},
       {"mtu", 1400},
       {"ipam",
        {{"type", "host-local"}, {"dataDir", ipam_dir()}, {"ranges", ranges}, {"routes", routes}}}},
      {{"type", "portmap"}, {"capabilities", {{"portMappings", true}}}, {"snat", true}},
  };
  for (const auto& p : tail_plugins) plugins.push_back(p);
  // As in deploy/cni/: loopback last, passing the bridge's result through.
  plugins.push_back({{"type", "loopback"}});
  nlohmann::json list = {{"cniVersion", "1.0.0"}, {"name", "pvtest"}, {"plugins", plugins}};
  (void)MakeDirs(dir_.Join("net.d"));
  (void)WriteFileAtomic(dir_.Join("net.d/10-pvtest.conflist"), list.dump(2));
}

PodNetworkOptions TestNetwork::Options() const {
  PodNetworkOptions o;
  o.cni.conf_dir = dir_.Join("net.d");
  o.cni.bin_dirs = {"/usr/lib/cni", PV_FAKE_CNI_DIR};
  o.netns_dir = dir_.Join("state/netns");
  o.cache_dir = dir_.Join("root/network");
  return o;
}

std::unique_ptr<PodNetworkManager> TestNetwork::NewManager() const {
  auto m = NewCniPodNetworkManager(Options());
  return m.ok() ? std::move(*m) : nullptr;
}

int AllocatedIps(const TestNetwork& net) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(net.ipam_dir() + "/pvtest", ec)) {
    std::string name = e.path().filename();
    if (name.rfind("10.213.", 0) == 0) ++n;
  }
  return n;
}

}  // namespace podvisor::testing
