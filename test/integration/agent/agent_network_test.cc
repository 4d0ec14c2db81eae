#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "pod-sandbox/agent_client.h"
#include "test/support/agent_process.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using testing::AgentProcess;
using testing::TempDir;

std::string RunShell(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

class AgentNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    if (system("command -v unshare >/dev/null && command -v ip >/dev/null") != 0) {
      GTEST_SKIP() << "needs unshare and ip (util-linux, iproute2)";
    }
    socket_ = dir_.Join("agent.sock");
    // The agent, in a new network namespace whose NIC is one end of a veth pair with a known MAC.
    agent_ = std::make_unique<AgentProcess>(
        std::vector<std::string>{"--channel", "listen:" + socket_, "--root", dir_.path(),
                                 "--allow-network"},
        std::vector<std::string>{"unshare", "-n", "--", "sh", "-c",
                                 "ip link add veth7 address 52:54:00:aa:bb:cc type veth peer name peer7 && "
                                 "ip link set peer7 up && "
                                 "exec \"$0\" \"$@\""},
        dir_.Join("agent.log"));
    std::string error;
    ASSERT_TRUE(agent_->Start(&error)) << error;
    AgentClient::Options options;
    auto client = AgentClient::Connect(socket_, options);
    ASSERT_TRUE(client.ok()) << client.status() << "\n" << agent_->ReadLog();
    client_ = std::move(*client);
  }

  std::string InAgentNetns(const std::string& cmd) {
    return RunShell("nsenter -t " + std::to_string(agent_->pid()) + " -n " + cmd + " 2>&1");
  }

  TempDir dir_;
  std::string socket_;
  std::unique_ptr<AgentProcess> agent_;
  std::unique_ptr<AgentClient> client_;
};

TEST_F(AgentNetworkTest, ConfiguresTheNicFoundByMac) {
  NetworkSetup setup;
  GuestInterface nic;
  nic.mac = "52:54:00:AA:BB:CC";  // case does not matter
  nic.name = "eth0";
  nic.mtu = 1400;
  nic.addresses = {"10.99.0.5/24", "fd00:99::5/64"};
  setup.interfaces.push_back(nic);
  setup.routes.push_back({"", "10.99.0.1", "eth0", 0});
  setup.routes.push_back({"10.100.0.0/16", "10.99.0.254", "", 100});
  absl::Status s = client_->SetupNetwork(setup, absl::Seconds(30));
  ASSERT_TRUE(s.ok()) << s << "\n" << agent_->ReadLog();

  const std::string link = InAgentNetns("ip -o link show eth0");
  EXPECT_NE(link.find("mtu 1400"), std::string::npos) << link;
  EXPECT_NE(link.find("52:54:00:aa:bb:cc"), std::string::npos) << link;
  const std::string addrs = InAgentNetns("ip -o addr show dev eth0");
  EXPECT_NE(addrs.find("inet 10.99.0.5/24"), std::string::npos) << addrs;
  EXPECT_NE(addrs.find("inet6 fd00:99::5/64"), std::string::npos) << addrs;
  const std::string routes = InAgentNetns("ip -4 route");
  EXPECT_NE(routes.find("default via 10.99.0.1 dev eth0"), std::string::npos) << routes;
  EXPECT_NE(routes.find("10.100.0.0/16 via 10.99.0.254 dev eth0"), std::string::npos) << routes;
  EXPECT_NE(routes.find("metric 100"), std::string::npos) << routes;
  EXPECT_NE(InAgentNetns("ip -o link show lo").find("UP"), std::string::npos);
}

TEST_F(AgentNetworkTest, UnknownMacIsNotFound) {
  NetworkSetup setup;
  GuestInterface nic;
  nic.mac = "52:54:00:00:00:01";
  setup.interfaces.push_back(nic);
  absl::Status s = client_->SetupNetwork(setup, absl::Seconds(30));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("52:54:00:00:00:01"), std::string::npos) << s;
}

}  // namespace
}  // namespace podvisor
