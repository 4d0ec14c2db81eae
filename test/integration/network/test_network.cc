#include "test/integration/network/test_network.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "test/integration/network/fake_guest.h"

namespace podvisor::testing {

namespace {

// Picks a /24 no other test process on this machine is using: each holds an flock on
// /tmp/podvisor-test-subnet-<n>.lock for its lifetime (the fd stays open until exit).
int ClaimSubnet() {
  const int start = static_cast<int>(::getpid() % 240);
  for (int i = 0; i < 240; ++i) {
    int n = (start + i) % 240 + 10;
    std::string lock = absl::StrCat("/tmp/podvisor-test-subnet-", n, ".lock");
    int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return n;  // fd deliberately kept
    ::close(fd);
  }
  return start + 10;
}

}  // namespace

TestNetwork::TestNetwork() {
  static const int n = ClaimSubnet();
  bridge_ = absl::StrCat("pvt", ::getpid());
  subnet_ = absl::StrCat("10.213.", n, ".0/24");
  gateway_ = absl::StrCat("10.213.", n, ".1");
}

TestNetwork::~TestNetwork() { (void)RunIp("", {"link", "del", bridge_}); }

void TestNetwork::WriteConflist(const nlohmann::json& tail_plugins) {
  nlohmann::json plugins = {
      {{"type", "bridge"},
       {"bridge", bridge_},
       {"isGateway", true},
       {"ipMasq", false},
       {"mtu", 1400},
       {"ipam",
        {{"type", "host-local"},
         {"dataDir", ipam_dir()},
         {"ranges", {{{{"subnet", subnet_}}}}},
         {"routes", {{{"dst", "0.0.0.0/0"}}}}}}},
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
