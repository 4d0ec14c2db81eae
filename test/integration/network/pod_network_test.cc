// Real CNI plugins (Debian's containernetworking-plugins) in real network namespaces. Root only.

#include "network/pod_network.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "network/netns.h"
#include "network/process.h"
#include "network/tap.h"
#include "test/integration/network/fake_guest.h"
#include "test/integration/network/test_network.h"

namespace podvisor {
namespace {

using nlohmann::json;
using testing::AcceptTcp;
using testing::ConnectTcp;
using testing::FakeGuest;
using ::testing::HasSubstr;
using testing::ListenTcp;
using testing::ReadExactly;
using testing::TestNetwork;
using testing::WriteAll;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class PodNetworkIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, bridges, iptables)";
    for (const char* plugin : {"bridge", "host-local", "portmap"}) {
      if (::access(absl::StrCat("/usr/lib/cni/", plugin).c_str(), X_OK) != 0) {
        GTEST_SKIP() << "containernetworking-plugins not installed (/usr/lib/cni/" << plugin << ")";
      }
    }
    net_.WriteConflist();
    manager_ = net_.NewManager();
    ASSERT_NE(manager_, nullptr);
  }

  // A failed assertion must not leak netns mounts, veths or IPs into the next test.
  void TearDown() override {
    if (manager_ == nullptr) manager_ = net_.NewManager();
    if (manager_ == nullptr) return;
    for (const auto& id : manager_->ListSandboxIds()) (void)manager_->Remove(id);
  }

  PodNetworkRequest Request(const std::string& id) {
    PodNetworkRequest r;
    r.sandbox_id = id;
    r.pod_name = "pod-" + id;
    r.pod_namespace = "default";
    r.pod_uid = "uid-" + id;
    return r;
  }

  // Sends `payload` from the host to the pod's IP through the guest and reads the echo back.
  void ExpectHostReachesGuest(const PodNetwork& pod, FakeGuest& guest) {
    absl::StatusOr<int> lfd = guest.Socket(AF_INET, SOCK_STREAM);
    ASSERT_TRUE(lfd.ok()) << lfd.status();
    Fd listener(*lfd);
    absl::StatusOr<int> port = ListenTcp(listener.get());
    ASSERT_TRUE(port.ok()) << port.status();
    Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(ConnectTcp(client.get(), pod.PrimaryIp(), *port).ok());
    absl::StatusOr<int> afd = AcceptTcp(listener.get());
    ASSERT_TRUE(afd.ok()) << afd.status();
    Fd server(*afd);
    ASSERT_TRUE(WriteAll(client.get(), "hello pod").ok());
    absl::StatusOr<std::string> got = ReadExactly(server.get(), 9);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, "hello pod");
  }

  TestNetwork net_;
  std::unique_ptr<PodNetworkManager> manager_;
};

TEST_F(PodNetworkIntegrationTest, SetupGivesAnIpFromTheConfiguredSubnetAndATapWithTheVethMtu) {
  absl::StatusOr<PodNetwork> pod = manager_->Setup(Request("pod1"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->netns_path, manager_->NetnsPath("pod1"));
  EXPECT_TRUE(network::IsNetns(pod->netns_path));
  EXPECT_EQ(pod->network_name, "pvtest");
  ASSERT_EQ(pod->ips.size(), 1u);
  EXPECT_EQ(pod->ips[0].family, 4);
  EXPECT_EQ(pod->ips[0].prefix_length, 24);
  EXPECT_EQ(pod->ips[0].Cidr(), pod->PrimaryIp() + "/24");
  EXPECT_EQ(pod->ips[0].gateway, net_.gateway());
  EXPECT_THAT(pod->PrimaryIp(), ::testing::StartsWith(net_.gateway().substr(0, 10)));
  ASSERT_EQ(pod->routes.size(), 1u);
  EXPECT_EQ(pod->routes[0].destination, "0.0.0.0/0");
  EXPECT_EQ(pod->routes[0].gateway, net_.gateway());
  EXPECT_EQ(pod->mtu, 1400);
  EXPECT_EQ(pod->mac.size(), 17u);

  // eth0 is as CNI left it, and the tap carries its MTU.
  absl::Status s = network::RunInNetns(pod->netns_path, [&]() -> absl::Status {
    absl::StatusOr<network::LinkInfo> eth0 = network::GetLinkInfo("eth0");
    absl::StatusOr<network::LinkInfo> tap = network::GetLinkInfo(pod->tap_name);
    if (!eth0.ok()) return eth0.status();
    if (!tap.ok()) return tap.status();
    EXPECT_EQ(eth0->mac, pod->mac);
    EXPECT_EQ(tap->mtu, 1400);
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;

  // Get answers the same after the fact (PodSandboxStatus).
  absl::StatusOr<PodNetwork> again = manager_->Get("pod1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->PrimaryIp(), pod->PrimaryIp());
  EXPECT_EQ(again->mac, pod->mac);
  EXPECT_TRUE(manager_->Check("pod1").ok()) << manager_->Check("pod1");

  ASSERT_TRUE(manager_->Teardown("pod1").ok());
  EXPECT_TRUE(manager_->Teardown("pod1").ok());  // idempotent
  EXPECT_EQ(testing::AllocatedIps(net_), 0);
  EXPECT_TRUE(network::IsNetns(pod->netns_path));  // Stop keeps the netns
  ASSERT_TRUE(manager_->Remove("pod1").ok());
  EXPECT_FALSE(std::filesystem::exists(pod->netns_path));
  EXPECT_TRUE(manager_->Remove("pod1").ok());
}

// With no guest behind the tap, what the host sends to the pod IP comes out of the tap fd.
TEST_F(PodNetworkIntegrationTest, FramesForThePodIpComeOutOfTheTap) {
  absl::StatusOr<PodNetwork> pod = manager_->Setup(Request("tapread"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  absl::StatusOr<int> tfd = OpenTap(pod->netns_path, pod->tap_name, false);
  ASSERT_TRUE(tfd.ok()) << tfd.status();
  Fd tap(*tfd);

  Fd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(9);
  ASSERT_EQ(::inet_pton(AF_INET, pod->PrimaryIp().c_str(), &dst.sin_addr), 1);
  ASSERT_GE(::sendto(udp.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)), 0);

  // The host first asks for the pod IP's MAC: an ARP request for it must reach the tap.
  bool saw_arp = false;
  unsigned char frame[2048];
  for (int i = 0; i < 50 && !saw_arp; ++i) {
    pollfd p{tap.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) break;
    ssize_t n = ::read(tap.get(), frame, sizeof(frame));
    if (n < 42) continue;
    uint16_t ethertype = static_cast<uint16_t>(frame[12] << 8 | frame[13]);
    if (ethertype != ETHERTYPE_ARP) continue;
    char target[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, frame + 38, target, sizeof(target));
    saw_arp = target == pod->PrimaryIp();
  }
  EXPECT_TRUE(saw_arp) << "no ARP request for " << pod->PrimaryIp() << " on the tap";
  // Teardown works while the tap is still open (a VM not yet gone).
  absl::Status removed = manager_->Remove("tapread");
  EXPECT_TRUE(removed.ok()) << removed;
}

TEST_F(PodNetworkIntegrationTest, HostReachesAGuestBehindTheTapOnThePodIp) {
  absl::StatusOr<PodNetwork> pod = manager_->Setup(Request("reach"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  auto guest = FakeGuest::Start(*pod, net_.dir().path());
  ASSERT_TRUE(guest.ok()) << guest.status();
  ExpectHostReachesGuest(*pod, **guest);
  EXPECT_GT((*guest)->frames_to_guest(), 0u);
  EXPECT_GT((*guest)->frames_from_guest(), 0u);
  guest->reset();
  EXPECT_TRUE(manager_->Remove("reach").ok());
}

TEST_F(PodNetworkIntegrationTest, TwoPodsReachEachOther) {
  absl::StatusOr<PodNetwork> a = manager_->Setup(Request("a"));
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<PodNetwork> b = manager_->Setup(Request("b"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->PrimaryIp(), b->PrimaryIp());
  auto guest_a = FakeGuest::Start(*a, net_.dir().path());
  ASSERT_TRUE(guest_a.ok()) << guest_a.status();
  auto guest_b = FakeGuest::Start(*b, net_.dir().path());
  ASSERT_TRUE(guest_b.ok()) << guest_b.status();

  absl::StatusOr<int> lfd = (*guest_b)->Socket(AF_INET, SOCK_STREAM);
  ASSERT_TRUE(lfd.ok());
  Fd listener(*lfd);
  absl::StatusOr<int> port = ListenTcp(listener.get());
  ASSERT_TRUE(port.ok());
  absl::StatusOr<int> cfd = (*guest_a)->Socket(AF_INET, SOCK_STREAM);
  ASSERT_TRUE(cfd.ok());
  Fd client(*cfd);
  absl::Status c = ConnectTcp(client.get(), b->PrimaryIp(), *port);
  ASSERT_TRUE(c.ok()) << c;
  absl::StatusOr<int> afd = AcceptTcp(listener.get());
  ASSERT_TRUE(afd.ok()) << afd.status();
  Fd server(*afd);
  ASSERT_TRUE(WriteAll(client.get(), "from a").ok());
  absl::StatusOr<std::string> got = ReadExactly(server.get(), 6);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "from a");

  // The peer address the server sees is pod a's IP: no NAT between pods.
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  ::getpeername(server.get(), reinterpret_cast<sockaddr*>(&peer), &len);
  char ip[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
  EXPECT_EQ(ip, a->PrimaryIp());
  guest_a->reset();
  guest_b->reset();
  EXPECT_TRUE(manager_->Remove("a").ok());
  EXPECT_TRUE(manager_->Remove("b").ok());
}

// A free TCP port on the host (bind to 0, close).
int FreeHostPort() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

TEST_F(PodNetworkIntegrationTest, HostPortReachesAListenerInThePod) {
  absl::StatusOr<std::string> iptables =
      network::FindExecutable("iptables", {"/usr/sbin", "/sbin", "/usr/bin", "/bin"});
  if (!iptables.ok()) GTEST_SKIP() << "the portmap plugin needs iptables: " << iptables.status();
  PodNetworkRequest req = Request("hostport");
  const int container_port = 8080;
  const int host_port = FreeHostPort();
  req.port_mappings = {
      {.protocol = "TCP", .container_port = container_port, .host_port = host_port, .host_ip = ""}};
  absl::StatusOr<PodNetwork> pod = manager_->Setup(req);
  ASSERT_TRUE(pod.ok()) << pod.status();
  auto guest = FakeGuest::Start(*pod, net_.dir().path());
  ASSERT_TRUE(guest.ok()) << guest.status();
  absl::StatusOr<int> lfd = (*guest)->Socket(AF_INET, SOCK_STREAM);
  ASSERT_TRUE(lfd.ok());
  Fd listener(*lfd);
  int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(container_port);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);

  // The bridge's own address is local to this host: the DNAT for locally generated traffic
  // applies to it, and nothing leaves the machine.
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  absl::Status c = ConnectTcp(client.get(), net_.gateway(), host_port);
  ASSERT_TRUE(c.ok()) << c;
  absl::StatusOr<int> afd = AcceptTcp(listener.get());
  ASSERT_TRUE(afd.ok()) << afd.status();
  Fd server(*afd);
  ASSERT_TRUE(WriteAll(client.get(), "via hostPort").ok());
  absl::StatusOr<std::string> got = ReadExactly(server.get(), 12);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "via hostPort");

  // And on 127.0.0.1, where kubelet users try first (portmap's SNAT makes the reply come back).
  Fd local(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  absl::Status lc = ConnectTcp(local.get(), "127.0.0.1", host_port);
  ASSERT_TRUE(lc.ok()) << lc;
  absl::StatusOr<int> lfd2 = AcceptTcp(listener.get());
  ASSERT_TRUE(lfd2.ok()) << lfd2.status();
  Fd local_server(*lfd2);
  ASSERT_TRUE(WriteAll(local.get(), "localhost").ok());
  absl::StatusOr<std::string> got2 = ReadExactly(local_server.get(), 9);
  ASSERT_TRUE(got2.ok()) << got2.status();
  EXPECT_EQ(*got2, "localhost");
  guest->reset();
  ASSERT_TRUE(manager_->Remove("hostport").ok());

  // DEL removed the DNAT rule: nothing answers on the host port any more.
  Fd after(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_FALSE(ConnectTcp(after.get(), net_.gateway(), host_port, 2000).ok());
}

TEST_F(PodNetworkIntegrationTest, DnsAndPortMappingsReachPluginsThatDeclareThem) {
  net_.WriteConflist(json::array({{{"type", "pv-fake-cni"},
                                   {"recordFile", net_.record_file()},
                                   {"capabilities", {{"dns", true}, {"portMappings", true}}}}}));
  PodNetworkRequest req = Request("dns");
  req.dns = {
      .servers = {"10.96.0.10"}, .searches = {"default.svc.cluster.local"}, .options = {"ndots:5"}};
  req.port_mappings = {
      {.protocol = "UDP", .container_port = 53, .host_port = FreeHostPort(), .host_ip = ""}};
  absl::StatusOr<PodNetwork> pod = manager_->Setup(req);
  ASSERT_TRUE(pod.ok()) << pod.status();
  absl::StatusOr<std::string> calls = ReadFile(net_.record_file());
  ASSERT_TRUE(calls.ok()) << calls.status();
  json add = json::parse(calls->substr(0, calls->find('\n')));
  EXPECT_EQ(add["command"], "ADD");
  EXPECT_EQ(add["netns"], pod->netns_path);
  EXPECT_THAT(add["args"].get<std::string>(), HasSubstr("K8S_POD_NAME=pod-dns"));
  const json& rc = add["stdin"]["runtimeConfig"];
  EXPECT_EQ(rc["dns"], json({{"servers", {"10.96.0.10"}},
                             {"searches", {"default.svc.cluster.local"}},
                             {"options", {"ndots:5"}}}));
  EXPECT_EQ(rc["portMappings"][0]["protocol"], "udp");
  EXPECT_EQ(rc["portMappings"][0]["containerPort"], 53);
  // The real bridge plugin's result reached the end of the chain as prevResult.
  EXPECT_EQ(add["stdin"]["prevResult"]["ips"][0]["address"], absl::StrCat(pod->PrimaryIp(), "/24"));
  EXPECT_TRUE(manager_->Remove("dns").ok());
}

TEST_F(PodNetworkIntegrationTest, MissingPluginLeavesNoNetnsAndSaysWhich) {
  net_.WriteConflist(json::array({{{"type", "pv-no-such-plugin"}}}));
  absl::StatusOr<PodNetwork> pod = manager_->Setup(Request("broken"));
  EXPECT_EQ(pod.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(pod.status().message()), HasSubstr("pv-no-such-plugin"));
  EXPECT_FALSE(std::filesystem::exists(manager_->NetnsPath("broken")));
  EXPECT_FALSE(manager_->Readiness().ready);
}

TEST_F(PodNetworkIntegrationTest, PluginFailureUndoesEverything) {
  net_.WriteConflist(json::array({{{"type", "pv-fake-cni"},
                                   {"failOn", "ADD"},
                                   {"failCode", 7},
                                   {"failMsg", "bad config for test"}}}));
  absl::StatusOr<PodNetwork> pod = manager_->Setup(Request("fails"));
  EXPECT_EQ(pod.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(pod.status().message()),
              HasSubstr("set up network of pod fails: CNI ADD plugin pv-fake-cni: CNI error 7: "
                        "bad config for test"));
  EXPECT_FALSE(std::filesystem::exists(manager_->NetnsPath("fails")));
  EXPECT_EQ(testing::AllocatedIps(net_), 0);  // bridge's IP was released by the undo DEL
  EXPECT_EQ(manager_->Get("fails").status().code(), absl::StatusCode::kNotFound);

  std::filesystem::remove(net_.dir().Join("net.d/10-pvtest.conflist"));
  (void)WriteFileAtomic(net_.dir().Join("net.d/10-pvtest.conflist"), "{broken");
  pod = manager_->Setup(Request("fails2"));
  EXPECT_EQ(pod.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(pod.status().message()), HasSubstr("not valid JSON"));
  EXPECT_FALSE(std::filesystem::exists(manager_->NetnsPath("fails2")));
  PodNetworkReadiness r = manager_->Readiness();
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "NetworkPluginNotReady");
}

TEST_F(PodNetworkIntegrationTest, TeardownAfterRestartUsesTheCachedResult) {
  absl::StatusOr<PodNetwork> pod = manager_->Setup(Request("restart"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(testing::AllocatedIps(net_), 1);
  manager_.reset();  // the daemon goes away; netns and cache stay

  // The conf dir changes meanwhile: DEL must still use the config of the ADD.
  std::filesystem::remove(net_.dir().Join("net.d/10-pvtest.conflist"));
  auto restarted = net_.NewManager();
  absl::StatusOr<PodNetwork> again = restarted->Get("restart");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->PrimaryIp(), pod->PrimaryIp());
  EXPECT_EQ(again->mac, pod->mac);
  ASSERT_TRUE(restarted->Teardown("restart").ok());
  EXPECT_EQ(testing::AllocatedIps(net_), 0);
  bool veth_gone = false;
  (void)network::RunInNetns(pod->netns_path, [&] {
    veth_gone = !network::GetLinkInfo("eth0").ok();
    return absl::OkStatus();
  });
  EXPECT_TRUE(veth_gone);
  ASSERT_TRUE(restarted->Remove("restart").ok());
  EXPECT_FALSE(std::filesystem::exists(pod->netns_path));
}

TEST_F(PodNetworkIntegrationTest, DualStackPodHasIpv4PrimaryAndIpv6Additional) {
  net_.WriteConflist(json::array(), /*dual_stack=*/true);
  absl::StatusOr<PodNetwork> a = manager_->Setup(Request("v6a"));
  absl::StatusOr<PodNetwork> b = manager_->Setup(Request("v6b"));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->ips.size(), 2u);
  EXPECT_EQ(a->ips[0].family, 4);
  EXPECT_EQ(a->ips[1].family, 6);
  EXPECT_EQ(a->ips[1].prefix_length, 64);
  EXPECT_EQ(a->AdditionalIps(), std::vector<std::string>{a->ips[1].address});
  ASSERT_EQ(a->routes.size(), 2u);
  EXPECT_EQ(a->routes[1].destination, "::/0");
  EXPECT_EQ(a->routes[1].gateway, a->ips[1].gateway);

  // Pod a reaches pod b's IPv6 address through both taps.
  auto guest_a = FakeGuest::Start(*a, net_.dir().path());
  ASSERT_TRUE(guest_a.ok()) << guest_a.status();
  auto guest_b = FakeGuest::Start(*b, net_.dir().path());
  ASSERT_TRUE(guest_b.ok()) << guest_b.status();
  absl::StatusOr<int> lfd = (*guest_b)->Socket(AF_INET6, SOCK_STREAM);
  ASSERT_TRUE(lfd.ok());
  Fd listener(*lfd);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  ASSERT_EQ(::inet_pton(AF_INET6, b->ips[1].address.c_str(), &addr.sin6_addr), 1);
  absl::StatusOr<int> cfd = (*guest_a)->Socket(AF_INET6, SOCK_STREAM);
  ASSERT_TRUE(cfd.ok());
  Fd client(*cfd);
  timeval tv{10, 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << std::strerror(errno);
  absl::StatusOr<int> afd = AcceptTcp(listener.get());
  ASSERT_TRUE(afd.ok()) << afd.status();
  Fd server(*afd);
  ASSERT_TRUE(WriteAll(client.get(), "v6").ok());
  absl::StatusOr<std::string> got = ReadExactly(server.get(), 2);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "v6");
  guest_a->reset();
  guest_b->reset();
  EXPECT_TRUE(manager_->Remove("v6a").ok());
  EXPECT_TRUE(manager_->Remove("v6b").ok());
}

// After a reboot /run is empty: DEL must still release the IP from the cache.
TEST_F(PodNetworkIntegrationTest, TeardownSucceedsWhenTheNetnsVanished) {
  absl::StatusOr<PodNetwork> pod = manager_->Setup(Request("vanished"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(manager_->ListSandboxIds(), std::vector<std::string>{"vanished"});
  ASSERT_TRUE(network::RemoveNetns(pod->netns_path).ok());
  absl::Status s = manager_->Teardown("vanished");
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(testing::AllocatedIps(net_), 0);
  EXPECT_TRUE(manager_->Remove("vanished").ok());
  EXPECT_TRUE(manager_->ListSandboxIds().empty());
}

TEST_F(PodNetworkIntegrationTest, FourPodsInParallelGetDistinctIps) {
  std::vector<absl::StatusOr<PodNetwork>> pods(4, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { pods[i] = manager_->Setup(Request(absl::StrCat("par", i))); });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> ips;
  for (const auto& p : pods) {
    ASSERT_TRUE(p.ok()) << p.status();
    ips.insert(p->PrimaryIp());
  }
  EXPECT_EQ(ips.size(), 4u);
  EXPECT_EQ(testing::AllocatedIps(net_), 4);
  threads.clear();
  std::vector<absl::Status> removed(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { removed[i] = manager_->Remove(absl::StrCat("par", i)); });
  }
  for (auto& t : threads) t.join();
  for (const auto& s : removed) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(testing::AllocatedIps(net_), 0);
}

}  // namespace
}  // namespace podvisor
