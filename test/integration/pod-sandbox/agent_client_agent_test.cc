// AgentClient against the real podvisor-agent binary (--no-pid1, on a unix socket): the host's
// client and the guest's agent speaking the real protocol.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/agent_frame.h"
#include "pod-sandbox/agent_wire.h"
#include "test/support/agent_process.h"
#include "test/support/disconnect_probe.h"
#include "test/support/temp_dir.h"


namespace podvisor {
namespace {

namespace v1 = agent::v1;
using testing::AgentProcess;
using testing::DisconnectProbe;
using testing::TempDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}


class RealAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.Join("root");
    mkdir(root_.c_str(), 0755);
    socket_ = dir_.Join("agent.sock");
    agent_ = std::make_unique<AgentProcess>(
        std::vector<std::string>{"--channel", "listen:" + socket_, "--root", root_},
        std::vector<std::string>{}, dir_.Join("agent.log"));
    std::string error;
    ASSERT_TRUE(agent_->Start(&error)) << error;
  }

  std::unique_ptr<AgentClient> Connect() {
    AgentClient::Options options;
    options.connect_timeout = absl::Seconds(30);
    options.on_disconnect = probe_.Callback();
    auto client = AgentClient::Connect(socket_, options);
    EXPECT_TRUE(client.ok()) << client.status() << "\nagent log:\n" << agent_->ReadLog();
    return client.ok() ? std::move(*client) : nullptr;
  }

  TempDir dir_;
  std::string root_;
  std::string socket_;
  std::unique_ptr<AgentProcess> agent_;
  DisconnectProbe probe_;
};

TEST_F(RealAgentTest, HandshakeReportsTheGuest) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  const AgentInfo& info = client->info();
  EXPECT_EQ(info.protocol_version, 1);
  EXPECT_FALSE(info.agent_version.empty());
  utsname u;
  uname(&u);
  EXPECT_EQ(info.kernel_release, u.release);
  EXPECT_EQ(info.pid, static_cast<uint32_t>(agent_->pid()));
  EXPECT_GT(info.boot_time_ns, 0);
  EXPECT_NE(std::find(info.features.begin(), info.features.end(), "sandbox"), info.features.end());
  EXPECT_TRUE(client->connected());
}

TEST_F(RealAgentTest, PingsFromManyThreadsAllComeBack) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (client->Ping(absl::Seconds(30)).ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 400);
}

TEST_F(RealAgentTest, SandboxSetupWritesTheGuestFiles) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  SandboxSetup setup;
  setup.hostname = "pod-a";
  setup.dns = DnsConfig{{"10.96.0.10"}, {"ns.svc.cluster.local", "svc.cluster.local"}, {"ndots:5"}};
  setup.hosts.push_back({"10.88.0.9", {"pod-a"}});
  ASSERT_TRUE(client->SetupSandbox(setup, absl::Seconds(30)).ok());
  EXPECT_EQ(Slurp(root_ + "/etc/hostname"), "pod-a\n");
  EXPECT_EQ(Slurp(root_ + "/etc/resolv.conf"),
            "# written by podvisor-agent\nnameserver 10.96.0.10\n"
            "search ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n");
  EXPECT_NE(Slurp(root_ + "/etc/hosts").find("10.88.0.9\tpod-a\n"), std::string::npos);
}

TEST_F(RealAgentTest, InvalidSetupFailsThatCallOnly) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  SandboxSetup setup;
  setup.dns = DnsConfig{{"not-an-ip"}, {}, {}};
  absl::Status s = client->SetupSandbox(setup, absl::Seconds(30));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not-an-ip"), std::string::npos) << s;
  EXPECT_TRUE(client->Ping(absl::Seconds(30)).ok());
}

TEST_F(RealAgentTest, ContainerCallsWithoutCrunFailClearly) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ContainerSpec spec;
  spec.process.args = {"/bin/true"};
  spec.rootfs_path = root_;
  absl::Status s = client->CreateContainer("c1", spec, absl::Seconds(30)).status();
  // This agent runs with the default --crun /usr/bin/crun: either it is there and the call
  // gets as far as crun, or the agent says it is missing. Never a hang or a dead channel.
  if (access("/usr/bin/crun", X_OK) != 0) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  }
  EXPECT_EQ(client->StartContainer("nope", absl::Seconds(30)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(client->connected());
}

TEST_F(RealAgentTest, ResourceUpdateOfAnUnknownContainerIsNotFound) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ContainerResources r;
  r.memory_limit_bytes = 64 << 20;
  EXPECT_EQ(client->UpdateContainerResources("nope", r, absl::Seconds(30)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(client->connected());
}

TEST_F(RealAgentTest, SandboxStatsReportTheGuestTotals) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<GuestSandboxStats> s = client->SandboxStats(absl::Seconds(30));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->containers.empty());
  EXPECT_GT(s->memory_total_bytes, 0u);
  EXPECT_GT(s->memory_used_bytes, 0u);
  EXPECT_GE(s->process_count, 1u);  // --no-pid1: the host's processes, the agent among them
}

// A TCP echo server on 127.0.0.1, port 0.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 4);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      ssize_t n;
      while ((n = read(c, buf, sizeof(buf))) > 0) (void)!write(c, buf, n);
      close(c);  // after the host's EOF: echo everything, then close
    });
  }
  ~EchoServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(RealAgentTest, PortForwardCarriesBytesBothWays) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EchoServer echo;
  const uint32_t stream = client->AllocateStreamId();
  std::promise<std::string> done;
  std::string acc;
  client->SetStreamCallback(stream, [&](absl::string_view data, bool eof) {
    acc.append(data.data(), data.size());
    if (eof) done.set_value(acc);
  });
  absl::Status s = client->PortForward(echo.port(), stream, absl::Seconds(30));
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(client->WriteStream(stream, "ping through the guest", true).ok());
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(fut.get(), "ping through the guest");
}

// PortForwardRequest.window: the guest reads its socket only while the host has acknowledged
// enough of what it sent.
TEST_F(RealAgentTest, PortForwardSendsNoMoreThanItsWindowUntilAcknowledged) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EchoServer echo;
  const uint32_t stream = client->AllocateStreamId();
  std::mutex mu;
  std::condition_variable cv;
  size_t received = 0;
  bool eof = false;
  client->SetStreamCallback(stream, [&](absl::string_view data, bool end) {
    std::lock_guard<std::mutex> lock(mu);
    received += data.size();
    eof = eof || end;
    cv.notify_all();
  });
  constexpr uint32_t kWindow = 64 * 1024;
  ASSERT_TRUE(client->PortForward(echo.port(), stream, absl::Seconds(30), kWindow).ok());
  const std::string payload(1 << 20, 'p');
  ASSERT_TRUE(client->WriteStream(stream, payload, true).ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return received >= kWindow; }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(received, kWindow) << "the guest sent beyond its window";
  }
  // Acknowledging as we go brings the rest.
  for (int i = 0; i < 600; ++i) {
    size_t now;
    {
      std::lock_guard<std::mutex> lock(mu);
      now = received;
      if (eof) break;
    }
    ASSERT_TRUE(client->AckStream(stream, now).ok());
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return received > now || eof; });
  }
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(eof);
  EXPECT_EQ(received, payload.size());
}

TEST_F(RealAgentTest, SlowStreamCallbackDoesNotKillTheChannel) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EchoServer echo;
  const uint32_t stream = client->AllocateStreamId();
  std::promise<void> done;
  client->SetStreamCallback(stream, [&](absl::string_view, bool eof) {
    // Holds the reader thread far longer than dead_after (1.5 s).
    std::this_thread::sleep_for(std::chrono::seconds(3));
    if (eof) done.set_value();
  });
  ASSERT_TRUE(client->PortForward(echo.port(), stream, absl::Seconds(30)).ok());
  ASSERT_TRUE(client->WriteStream(stream, "x", true).ok());
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_TRUE(client->Ping(absl::Seconds(30)).ok());
  EXPECT_TRUE(client->connected());
  EXPECT_FALSE(probe_.why.has_value()) << *probe_.why;
}

TEST_F(RealAgentTest, PortForwardToAClosedPortFails) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  uint16_t port;
  {
    EchoServer probe;  // a port that was free a moment ago
    port = probe.port();
    int c = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    close(c);
  }
  absl::Status s = client->PortForward(port, client->AllocateStreamId(), absl::Seconds(30));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(std::to_string(port)), std::string::npos) << s;
  EXPECT_TRUE(client->connected());
}

TEST_F(RealAgentTest, ShutdownIsAcknowledgedThenTheAgentExits) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Shutdown(false, absl::Seconds(1), absl::Seconds(30)).ok());
  int status = agent_->WaitExit(30000);
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_TRUE(probe_.Wait(std::chrono::seconds(30)));
  EXPECT_EQ(probe_.why->code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(client->connected());
  EXPECT_EQ(client->Ping(absl::Seconds(1)).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(RealAgentTest, KilledAgentIsNoticed) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  const auto killed_at = std::chrono::steady_clock::now();
  agent_->Kill();
  ASSERT_TRUE(probe_.Wait(std::chrono::seconds(30)));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(probe_.at - killed_at);
  std::printf("disconnect noticed %lld ms after SIGKILL\n", static_cast<long long>(ms.count()));
  // A closed socket is an event, not a timeout: far below the 2 s the daemon promises.
  EXPECT_LT(ms.count(), 2000);
  EXPECT_FALSE(client->connected());
}

TEST_F(RealAgentTest, FrozenAgentIsDeclaredDeadByTheHeartbeat) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  const auto stopped_at = std::chrono::steady_clock::now();
  kill(agent_->pid(), SIGSTOP);  // the socket stays open: only the heartbeat can tell
  ASSERT_TRUE(probe_.Wait(std::chrono::seconds(30)));
  kill(agent_->pid(), SIGCONT);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(probe_.at - stopped_at);
  std::printf("frozen agent declared dead after %lld ms\n", static_cast<long long>(ms.count()));
  EXPECT_GE(ms.count(), 1500);  // not before the configured dead_after
  EXPECT_EQ(probe_.why->code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(probe_.why->message().find("sent nothing"), std::string::npos) << *probe_.why;
}

TEST(AgentConnectTest, RetriesUntilTheSocketAppears) {
  TempDir dir;
  const std::string socket = dir.Join("late.sock");
  auto connecting = std::async(std::launch::async, [&] {
    AgentClient::Options options;
    options.connect_timeout = absl::Seconds(30);
    return AgentClient::Connect(socket, options);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  AgentProcess agent({"--channel", "listen:" + socket, "--root", dir.path()}, {},
                     dir.Join("agent.log"));
  std::string error;
  ASSERT_TRUE(agent.Start(&error)) << error;
  auto client = connecting.get();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->Ping(absl::Seconds(30)).ok());
}

TEST(AgentConnectTest, GivesUpAtTheTimeout) {
  TempDir dir;
  AgentClient::Options options;
  options.connect_timeout = absl::Milliseconds(200);
  auto client = AgentClient::Connect(dir.Join("never.sock"), options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kDeadlineExceeded);
}

// ---- a fake guest on a socketpair ---------------------------------------------------------

}  // namespace
}  // namespace podvisor
