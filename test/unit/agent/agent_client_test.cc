// AgentClient against the real podvisor-agent (--no-pid1, on a unix socket) and against a fake,
// hostile guest on a socketpair.
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
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

namespace v1 = agent::v1;
using testing::AgentProcess;
using testing::TempDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Records the disconnect callback.
struct DisconnectProbe {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::Status> why;
  std::chrono::steady_clock::time_point at;

  std::function<void(const absl::Status&)> Callback() {
    return [this](const absl::Status& s) {
      std::lock_guard<std::mutex> lock(mu);
      why = s;
      at = std::chrono::steady_clock::now();
      cv.notify_all();
    };
  }
  bool Wait(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return why.has_value(); });
  }
};

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
  absl::Status s = client->CreateContainer("c1", spec, absl::Seconds(30));
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

class FakeGuest {
 public:
  FakeGuest() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    host_fd_ = fds[0];
    guest_fd_ = fds[1];
  }
  ~FakeGuest() { close(guest_fd_); }

  int TakeHostFd() { return std::exchange(host_fd_, -1); }

  // Reads one frame from the host (blocking).
  std::optional<v1::Frame> Read() {
    while (true) {
      if (auto p = decoder_.Next()) {
        v1::Frame f;
        if (!f.ParseFromString(*p)) return std::nullopt;
        return f;
      }
      char buf[65536];
      ssize_t n = read(guest_fd_, buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      if (!decoder_.Feed(absl::string_view(buf, n)).ok()) return std::nullopt;
    }
  }
  // Reads frames until a request of `kind`, skipping heartbeat pings.
  std::optional<v1::Frame> ReadRequest(v1::Request::CallCase kind) {
    while (auto f = Read()) {
      if (f->has_request() && f->request().call_case() == kind) return f;
    }
    return std::nullopt;
  }
  void WriteRaw(const std::string& bytes) {
    ASSERT_EQ(write(guest_fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  void Write(const v1::Frame& f) { WriteRaw(EncodeAgentFrame(f.SerializeAsString())); }
  void AnswerHello() {
    auto hello = ReadRequest(v1::Request::kHello);
    ASSERT_TRUE(hello.has_value());
    v1::Frame r;
    r.set_id(hello->id());
    r.mutable_response()->mutable_hello()->set_version(v1::PROTOCOL_VERSION_1);
    r.mutable_response()->mutable_hello()->set_agent_version("fake");
    Write(r);
  }

 private:
  int host_fd_ = -1;
  int guest_fd_ = -1;
  AgentFrameDecoder decoder_;
};

class FakeGuestTest : public ::testing::Test {
 protected:
  std::unique_ptr<AgentClient> Adopt(absl::Duration dead_after = absl::Seconds(2)) {
    AgentClient::Options options;
    options.dead_after = dead_after;
    options.handshake_timeout = absl::Seconds(30);
    options.on_disconnect = probe_.Callback();
    options.on_event = [this](const AgentEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
      cv_.notify_all();
    };
    std::thread guest([this] { guest_.AnswerHello(); });
    auto client = AgentClient::Adopt(guest_.TakeHostFd(), options);
    guest.join();
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  FakeGuest guest_;
  DisconnectProbe probe_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<AgentEvent> events_;
};

TEST_F(FakeGuestTest, GarbageFrameClosesTheChannel) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  guest_.WriteRaw(EncodeAgentFrame("\xde\xad\xbe\xef garbage"));
  ASSERT_TRUE(probe_.Wait(std::chrono::seconds(30)));
  EXPECT_EQ(probe_.why->code(), absl::StatusCode::kInvalidArgument) << *probe_.why;
  EXPECT_FALSE(client->connected());
}

TEST_F(FakeGuestTest, OversizedFrameClosesTheChannelWithoutReadingIt) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  guest_.WriteRaw(std::string("\x7f\xff\xff\xff", 4));
  ASSERT_TRUE(probe_.Wait(std::chrono::seconds(30)));
  EXPECT_NE(probe_.why->message().find("exceeds the limit"), std::string::npos) << *probe_.why;
}

TEST_F(FakeGuestTest, ResponseOfTheWrongTypeFailsTheCallAndTheChannel) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  std::thread guest([&] {
    auto req = guest_.ReadRequest(v1::Request::kStats);
    ASSERT_TRUE(req.has_value());
    v1::Frame r;
    r.set_id(req->id());
    r.mutable_response()->mutable_empty();  // Stats must answer with stats
    guest_.Write(r);
  });
  auto stats = client->Stats({}, absl::Seconds(30));
  guest.join();
  EXPECT_FALSE(stats.ok());
  ASSERT_TRUE(probe_.Wait(std::chrono::seconds(30)));
  EXPECT_FALSE(client->connected());
}

TEST_F(FakeGuestTest, UnansweredCallHitsItsDeadlineAndTheChannelLives) {
  auto client = Adopt(absl::Hours(1));
  ASSERT_NE(client, nullptr);
  std::thread guest([&] { guest_.ReadRequest(v1::Request::kWaitProcess); });
  auto r = client->WaitProcess("c1", "", absl::Milliseconds(300));
  guest.join();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_TRUE(client->connected());
}

TEST_F(FakeGuestTest, AsyncWaitsCompleteInAnyOrder) {
  auto client = Adopt(absl::Hours(1));
  ASSERT_NE(client, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, absl::StatusOr<ExitInfo>> results;
  for (const char* id : {"a", "b"}) {
    client->WaitProcessAsync(id, "", absl::Seconds(30), [&, id = std::string(id)](auto r) {
      std::lock_guard<std::mutex> lock(mu);
      results.emplace(id, std::move(r));
      cv.notify_all();
    });
  }
  auto first = guest_.ReadRequest(v1::Request::kWaitProcess);
  auto second = guest_.ReadRequest(v1::Request::kWaitProcess);
  ASSERT_TRUE(first && second);
  // Answer the second call first.
  for (const auto& req : {*second, *first}) {
    v1::Frame r;
    r.set_id(req.id());
    r.mutable_response()->mutable_exit_status()->set_exit_code(
        req.request().wait_process().container_id() == "a" ? 1 : 2);
    guest_.Write(r);
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return results.size() == 2; }));
  ASSERT_TRUE(results.at("a").ok());
  EXPECT_EQ(results.at("a")->exit_code, 1);
  EXPECT_EQ(results.at("b")->exit_code, 2);
}

TEST_F(FakeGuestTest, LateAnswerToAnExpiredCallIsIgnored) {
  auto client = Adopt(absl::Hours(1));
  ASSERT_NE(client, nullptr);
  std::optional<v1::Frame> req;
  std::thread guest([&] { req = guest_.ReadRequest(v1::Request::kWaitProcess); });
  auto r = client->WaitProcess("c1", "", absl::Milliseconds(100));
  guest.join();
  ASSERT_TRUE(req.has_value());
  v1::Frame late;
  late.set_id(req->id());
  late.mutable_response()->mutable_exit_status()->set_exit_code(3);
  guest_.Write(late);
  std::thread pinger([&] {
    auto ping = guest_.ReadRequest(v1::Request::kPing);
    while (ping && ping->request().ping().nonce() == 0) ping = guest_.ReadRequest(v1::Request::kPing);
    if (!ping) return;
    v1::Frame pong;
    pong.set_id(ping->id());
    pong.mutable_response()->mutable_ping()->set_nonce(ping->request().ping().nonce());
    guest_.Write(pong);
  });
  EXPECT_TRUE(client->Ping(absl::Seconds(30)).ok());
  pinger.join();
  EXPECT_TRUE(client->connected());
}

TEST_F(FakeGuestTest, StreamsAndEventsReachTheirCallbacks) {
  auto client = Adopt(absl::Hours(1));
  ASSERT_NE(client, nullptr);
  const uint32_t out = client->AllocateStreamId();
  const uint32_t in = client->AllocateStreamId();
  EXPECT_NE(out, in);
  std::promise<std::string> received;
  std::string acc;
  client->SetStreamCallback(out, [&](absl::string_view data, bool eof) {
    acc.append(data.data(), data.size());
    if (eof) received.set_value(acc);
  });
  v1::Frame d;
  d.mutable_stream()->set_stream_id(out);
  d.mutable_stream()->set_data("hello ");
  guest_.Write(d);
  d.mutable_stream()->set_data("world");
  d.mutable_stream()->set_eof(true);
  guest_.Write(d);
  auto fut = received.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(fut.get(), "hello world");

  const std::string big(3 << 20, 'z');  // split into 1 MiB frames
  std::thread writer([&] { EXPECT_TRUE(client->WriteStream(in, big, true).ok()); });
  std::string got;
  bool eof = false;
  while (!eof) {
    auto f = guest_.Read();
    ASSERT_TRUE(f.has_value());
    if (!f->has_stream()) continue;
    EXPECT_EQ(f->stream().stream_id(), in);
    EXPECT_LE(f->stream().data().size(), kAgentMaxStreamChunk);
    got += f->stream().data();
    eof = f->stream().eof();
  }
  writer.join();
  EXPECT_EQ(got.size(), big.size());

  v1::Frame e;
  auto* exited = e.mutable_event()->mutable_process_exited();
  exited->set_container_id("c1");
  exited->set_exec_id("e1");
  exited->mutable_status()->set_exit_code(137);
  exited->mutable_status()->set_signal(9);
  exited->mutable_status()->set_oom_killed(true);
  guest_.Write(e);
  std::unique_lock<std::mutex> lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !events_.empty(); }));
  EXPECT_EQ(events_[0].kind, AgentEvent::Kind::kProcessExited);
  EXPECT_EQ(events_[0].container_id, "c1");
  EXPECT_EQ(events_[0].exec_id, "e1");
  EXPECT_EQ(events_[0].exit.exit_code, 137);
  EXPECT_TRUE(events_[0].exit.oom_killed);
}

TEST_F(FakeGuestTest, VersionMismatchFailsTheHandshake) {
  AgentClient::Options options;
  options.handshake_timeout = absl::Seconds(30);
  std::thread guest([&] {
    auto hello = guest_.ReadRequest(v1::Request::kHello);
    ASSERT_TRUE(hello.has_value());
    v1::Frame r;
    r.set_id(hello->id());
    r.mutable_response()->mutable_status()->set_code(v1::FAILED_PRECONDITION);
    r.mutable_response()->mutable_status()->set_message("agent speaks protocol version 2 only");
    guest_.Write(r);
  });
  auto client = AgentClient::Adopt(guest_.TakeHostFd(), options);
  guest.join();
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(client.status().message().find("version 2"), std::string::npos) << client.status();
}

TEST_F(FakeGuestTest, HandshakeSkipsTheRestOfAPreviousSessionsFrames) {
  // What a guest was writing when the previous daemon's connection went away reaches this one
  // first: the tail of a frame cut in the middle, then whole frames of the old session.
  v1::Frame old_data;
  old_data.mutable_stream()->set_stream_id(7);
  old_data.mutable_stream()->set_data(std::string(3000, 'x'));
  const std::string cut = EncodeAgentFrame(old_data.SerializeAsString());
  v1::Frame old_event;
  old_event.mutable_event()->mutable_process_exited()->set_container_id("c9");
  guest_.WriteRaw(cut.substr(1234) + EncodeAgentFrame(old_event.SerializeAsString()) +
                  EncodeAgentFrame(old_data.SerializeAsString()));
  AgentClient::Options options;
  options.handshake_timeout = absl::Seconds(30);
  std::thread guest([this] { guest_.AnswerHello(); });
  auto client = AgentClient::Adopt(guest_.TakeHostFd(), options);
  guest.join();
  ASSERT_TRUE(client.ok()) << client.status();
  std::thread pong([this] {
    auto ping = guest_.ReadRequest(v1::Request::kPing);
    ASSERT_TRUE(ping.has_value());
    v1::Frame r;
    r.set_id(ping->id());
    r.mutable_response()->mutable_ping()->set_nonce(ping->request().ping().nonce());
    guest_.Write(r);
  });
  EXPECT_TRUE((*client)->Ping(absl::Seconds(30)).ok());
  pong.join();
  EXPECT_TRUE((*client)->connected());
}

TEST_F(FakeGuestTest, SilentGuestFailsTheHandshakeAtItsTimeout) {
  AgentClient::Options options;
  options.handshake_timeout = absl::Milliseconds(500);
  auto client = AgentClient::Adopt(guest_.TakeHostFd(), options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kDeadlineExceeded) << client.status();
}

}  // namespace
}  // namespace podvisor
