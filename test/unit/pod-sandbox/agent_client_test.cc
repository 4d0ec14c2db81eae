// AgentClient against a fake, hostile guest on a socketpair: framing, deadlines, stray and late
// answers, streams and events, the handshake.
#include "pod-sandbox/agent_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
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

#include "pod-sandbox/agent_frame.h"
#include "pod-sandbox/agent_wire.h"
#include "test/support/disconnect_probe.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

namespace v1 = agent::v1;
using testing::DisconnectProbe;
using testing::TempDir;

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

// The real client against a guest answering as the agent does: each call's answer is the one
// it expects, so the channel stays up (a missing entry in the client's table closed it).
TEST_F(FakeGuestTest, InspectAndListContainersAnswersAreTakenAndTheChannelLives) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  std::thread guest([&] {
    auto req = guest_.ReadRequest(v1::Request::kInspect);
    ASSERT_TRUE(req.has_value());
    v1::Frame r;
    r.set_id(req->id());
    v1::GuestProcess* p = r.mutable_response()->mutable_inspect()->add_processes();
    p->set_pid(1);
    p->set_command("/init");
    p->set_state("S");
    v1::GuestDisk* d = r.mutable_response()->mutable_inspect()->add_disks();
    d->set_name("vdb");
    d->set_serial("layer-1");
    d->set_mount_point("/run/layers/1");
    guest_.Write(r);
    req = guest_.ReadRequest(v1::Request::kListContainers);
    ASSERT_TRUE(req.has_value());
    v1::Frame l;
    l.set_id(req->id());
    v1::ListContainersResponse::Entry* e =
        l.mutable_response()->mutable_containers()->add_containers();
    e->set_id("c1");
    e->set_state(v1::ListContainersResponse::RUNNING);
    e->set_pid(9);
    guest_.Write(l);
  });
  absl::StatusOr<GuestInspection> inspection = client->Inspect(absl::Seconds(30));
  absl::StatusOr<std::vector<GuestContainer>> listed = client->ListContainers(absl::Seconds(30));
  guest.join();
  ASSERT_TRUE(inspection.ok()) << inspection.status();
  ASSERT_EQ(inspection->processes.size(), 1u);
  EXPECT_EQ(inspection->processes[0].command, "/init");
  ASSERT_EQ(inspection->disks.size(), 1u);
  EXPECT_EQ(inspection->disks[0].mount_point, "/run/layers/1");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, "c1");
  EXPECT_EQ((*listed)[0].state, GuestContainer::State::kRunning);
  EXPECT_TRUE(client->connected());
}

// Answers the next CreateContainer as the agent does, with `user` as the init process's (none:
// an agent older than the field); the request's user in `asked`.
void AnswerCreate(FakeGuest& guest, const std::optional<ContainerUser>& user, v1::User* asked) {
  auto req = guest.ReadRequest(v1::Request::kCreateContainer);
  ASSERT_TRUE(req.has_value());
  *asked = req->request().create_container().spec().process().user();
  v1::Frame r;
  r.set_id(req->id());
  r.mutable_response()->mutable_empty();
  if (user) {
    v1::User* u = r.mutable_response()->mutable_container_user();
    u->set_has_uid(true);
    u->set_uid(user->uid);
    u->set_gid(user->gid);
    for (uint32_t g : user->supplemental_groups) u->add_additional_gids(g);
  }
  guest.Write(r);
}

ContainerSpec StrictSpec() {
  ContainerSpec spec;
  spec.process.args = {"/bin/true"};
  spec.process.user.uid = 1000;
  spec.process.user.gid = 3000;
  spec.process.user.additional_gids = {4000};
  spec.process.user.strict_groups = true;
  spec.rootfs_path = "/rootfs";
  return spec;
}

TEST_F(FakeGuestTest, CreateContainerReturnsTheUserTheGuestResolved) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  v1::User asked;
  std::thread guest([&] { AnswerCreate(guest_, ContainerUser{1000, 3000, {3000, 4000}}, &asked); });
  auto user = client->CreateContainer("c1", StrictSpec(), absl::Seconds(30));
  guest.join();
  EXPECT_TRUE(asked.strict_supplemental_groups());
  ASSERT_TRUE(user.ok()) << user.status();
  ASSERT_TRUE(user->has_value());
  EXPECT_EQ(**user, (ContainerUser{1000, 3000, {3000, 4000}}));

  std::thread old([&] { AnswerCreate(guest_, std::nullopt, &asked); });
  auto unknown = client->CreateContainer("c2", StrictSpec(), absl::Seconds(30));
  old.join();
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_FALSE(unknown->has_value());
  EXPECT_TRUE(client->connected());
}

// A guest that gives the container a group Strict left out: the call fails and the container is
// removed, forcibly, before anything can start it.
TEST_F(FakeGuestTest, AUserUnlikeTheRequestFailsTheCreateAndRemovesTheContainer) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  v1::User asked;
  bool removed = false;
  std::thread guest([&] {
    AnswerCreate(guest_, ContainerUser{1000, 3000, {3000, 4000, 50000}}, &asked);
    auto req = guest_.ReadRequest(v1::Request::kRemoveContainer);
    ASSERT_TRUE(req.has_value());
    removed = req->request().remove_container().container_id() == "c1" &&
              req->request().remove_container().force();
    v1::Frame r;
    r.set_id(req->id());
    r.mutable_response()->mutable_empty();
    guest_.Write(r);
  });
  auto user = client->CreateContainer("c1", StrictSpec(), absl::Seconds(30));
  guest.join();
  EXPECT_EQ(user.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(user.status().message().find("50000"), std::string::npos) << user.status();
  EXPECT_TRUE(removed);
  EXPECT_TRUE(client->connected());
}

// Groups no kernel would leave (unsorted, duplicated): a broken or hostile guest.
TEST_F(FakeGuestTest, AMalformedUserClosesTheChannel) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  v1::User asked;
  std::thread guest([&] { AnswerCreate(guest_, ContainerUser{1000, 3000, {4000, 3000}}, &asked); });
  auto user = client->CreateContainer("c1", StrictSpec(), absl::Seconds(30));
  guest.join();
  EXPECT_FALSE(user.ok());
  ASSERT_TRUE(probe_.Wait(std::chrono::seconds(30)));
  EXPECT_FALSE(client->connected());
}

// Answers the next StartContainer with pid 42 and `steps` step timings named `name`.
void AnswerStartWithTimings(FakeGuest& guest, int steps, const std::string& name) {
  auto req = guest.ReadRequest(v1::Request::kStartContainer);
  ASSERT_TRUE(req.has_value());
  v1::Frame r;
  r.set_id(req->id());
  r.mutable_response()->mutable_process_started()->set_pid(42);
  for (int i = 0; i < steps; ++i) {
    v1::StepTiming* t = r.mutable_response()->add_timings();
    t->set_step(name);
    t->set_duration_ns(1000000);
  }
  guest.Write(r);
}

TEST_F(FakeGuestTest, StepTimingsRideAlongWithTheAnswer) {
  auto client = Adopt();
  ASSERT_NE(client, nullptr);
  std::thread guest([&] { AnswerStartWithTimings(guest_, 32, "open exec.fifo"); });
  auto pid = client->StartContainer("c1", absl::Seconds(30));
  guest.join();
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, 42u);
  EXPECT_TRUE(client->connected());
}

TEST_F(FakeGuestTest, TooManyOrUnprintableStepTimingsCloseTheChannel) {
  for (const auto& [steps, name] :
       std::vector<std::pair<int, std::string>>{{33, "step"}, {1, "bad\nname"}, {1, ""}}) {
    FakeGuest guest;
    DisconnectProbe probe;
    AgentClient::Options options;
    options.on_disconnect = probe.Callback();
    std::thread hello([&] { guest.AnswerHello(); });
    auto client = AgentClient::Adopt(guest.TakeHostFd(), options);
    hello.join();
    ASSERT_TRUE(client.ok()) << client.status();
    std::thread answer([&] { AnswerStartWithTimings(guest, steps, name); });
    auto pid = (*client)->StartContainer("c1", absl::Seconds(30));
    answer.join();
    EXPECT_FALSE(pid.ok()) << steps << " steps named \"" << name << "\"";
    ASSERT_TRUE(probe.Wait(std::chrono::seconds(30)));
    EXPECT_NE(probe.why->message().find("step timing"), std::string::npos) << *probe.why;
  }
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
    while (ping && ping->request().ping().nonce() == 0)
      ping = guest_.ReadRequest(v1::Request::kPing);
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
