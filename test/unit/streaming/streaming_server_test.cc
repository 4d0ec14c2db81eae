#include "streaming/streaming_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "test/fakes/fake_streaming_runtime.h"
#include "test/unit/streaming/streaming_test_client.h"

namespace podvisor::streaming {
namespace {

using testing::ExecOptions;
using testing::ExecResult;
using testing::FakeStreamingRuntime;
using testing::SpdyExec;
using testing::SpdyTestClient;
using testing::WsTestClient;
namespace spdy = streaming::spdy;

ExecRequest Exec(std::vector<std::string> cmd, bool in = false, bool tty = false) {
  ExecRequest request;
  request.container_id = "c1";
  request.cmd = std::move(cmd);
  request.tty = tty;
  request.in = in;
  request.out = true;
  request.err = !tty;
  return request;
}

// Sends `request` (a request head) on a new connection and returns the whole response.
std::string RawHttp(const std::string& base_url, const std::string& request) {
  int fd = testing::Dial("127.0.0.1", testing::ParseUrl(base_url).port);
  if (fd < 0) return "";
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buf[1024];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, n);
  ::close(fd);
  return response;
}

class StreamingServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(StreamingServerOptions{}); }
  void TearDown() override {
    if (server_) server_->Stop();
    EXPECT_EQ(runtime_.active(), 0) << "a runtime call outlived the server";
  }

  void StartServer(StreamingServerOptions options) {
    if (server_) server_->Stop();
    absl::StatusOr<std::unique_ptr<StreamingServer>> server =
        StreamingServer::Start(options, &runtime_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::string ExecUrl(const ExecRequest& request) {
    absl::StatusOr<std::string> url = server_->GetExecUrl(request);
    EXPECT_TRUE(url.ok()) << url.status();
    return url.value_or("");
  }

  FakeStreamingRuntime runtime_;
  std::unique_ptr<StreamingServer> server_;
};

TEST_F(StreamingServerTest, UrlsPointAtTheServer) {
  std::string url = ExecUrl(Exec({"echo", "hi"}));
  EXPECT_TRUE(absl::StartsWith(url, server_->BaseUrl() + "/exec/")) << url;
  EXPECT_TRUE(absl::StartsWith(server_->BaseUrl(), "http://127.0.0.1:"));
  AttachRequest attach{"c1", false, false, true, false};
  EXPECT_TRUE(absl::StrContains(*server_->GetAttachUrl(attach), "/attach/"));
  EXPECT_TRUE(absl::StrContains(*server_->GetPortForwardUrl({"s1", {80}}), "/portforward/"));
}

TEST_F(StreamingServerTest, RefusesRequestsKubeletWouldRefuse) {
  ExecRequest tty_and_stderr = Exec({"sh"});
  tty_and_stderr.tty = true;
  EXPECT_EQ(server_->GetExecUrl(tty_and_stderr).status().code(),
            absl::StatusCode::kInvalidArgument);
  ExecRequest no_streams = Exec({"sh"});
  no_streams.out = no_streams.err = false;
  EXPECT_EQ(server_->GetExecUrl(no_streams).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->GetExecUrl(Exec({})).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->GetPortForwardUrl({"s1", {70000}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StreamingServerTest, SpdyExecWithoutTty) {
  ExecResult result = SpdyExec(ExecUrl(Exec({"echo", "hello", "world"})), {});
  EXPECT_EQ(result.http_status, 101);
  EXPECT_EQ(result.out, "hello world\n");
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(result.error, R"({"metadata":{},"status":"Success"})");
}

TEST_F(StreamingServerTest, SpdyExecStderr) {
  ExecResult result = SpdyExec(ExecUrl(Exec({"stderr", "oops"})), {});
  EXPECT_EQ(result.err, "oops");
  EXPECT_EQ(result.out, "");
}

TEST_F(StreamingServerTest, SpdyExecReportsNonZeroExitCode) {
  // A command that ends at once races the stream replies: repeat it.
  for (int i = 0; i < 50; ++i) {
    ExecResult result = SpdyExec(ExecUrl(Exec({"exit", "3"})), {});
    ASSERT_EQ(result.violations, 0) << "data sent before the stream's SYN_REPLY";
    nlohmann::json status = nlohmann::json::parse(result.error);
    EXPECT_EQ(status["status"], "Failure");
    EXPECT_EQ(status["reason"], "NonZeroExitCode");
    EXPECT_EQ(status["details"]["causes"][0]["reason"], "ExitCode");
    EXPECT_EQ(status["details"]["causes"][0]["message"], "3");
  }
}

TEST_F(StreamingServerTest, SpdyExecReportsRuntimeErrors) {
  ExecRequest request = Exec({"echo"});
  request.container_id = "missing";
  ExecResult result = SpdyExec(ExecUrl(request), {});
  nlohmann::json status = nlohmann::json::parse(result.error);
  EXPECT_EQ(status["reason"], "InternalError");
  EXPECT_TRUE(absl::StrContains(status["message"].get<std::string>(), "container missing"));
}

TEST_F(StreamingServerTest, OlderProtocolsWriteTheErrorAsText) {
  for (const char* protocol : {"v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}) {
    ExecOptions options;
    options.protocol = protocol;
    ExecResult failed = SpdyExec(ExecUrl(Exec({"exit", "7"})), options);
    EXPECT_EQ(failed.http_status, 101) << protocol;
    EXPECT_TRUE(absl::StrContains(failed.error, "non-zero exit code")) << protocol;
    EXPECT_TRUE(absl::StrContains(failed.error, "7")) << protocol;
    ExecResult ok = SpdyExec(ExecUrl(Exec({"echo", "x"})), options);
    EXPECT_EQ(ok.out, "x\n") << protocol;
    EXPECT_EQ(ok.error, "") << protocol;
  }
}

TEST_F(StreamingServerTest, SpdyExecPipesStdin) {
  std::string input;
  for (int i = 0; i < 20000; ++i) absl::StrAppend(&input, "line ", i, "\n");
  ExecOptions options;
  options.in = true;
  options.stdin_data = input;
  ExecResult result = SpdyExec(ExecUrl(Exec({"cat"}, /*in=*/true)), options);
  EXPECT_EQ(result.out.size(), input.size());
  EXPECT_EQ(result.out, input);
  EXPECT_EQ(result.error, R"({"metadata":{},"status":"Success"})");
}

TEST_F(StreamingServerTest, SpdyExecWithTtyAndResize) {
  ExecOptions options;
  options.tty = true;
  options.err = false;
  options.in = true;
  options.close_stdin = false;
  options.resizes = {{80, 24}, {132, 50}};
  ExecResult result = SpdyExec(ExecUrl(Exec({"resize", "2"}, /*in=*/true, /*tty=*/true)), options);
  EXPECT_EQ(result.out, "80x24\n132x50\n");
  EXPECT_EQ(result.error, R"({"metadata":{},"status":"Success"})");
  EXPECT_TRUE(runtime_.last_exec().tty);
}

TEST_F(StreamingServerTest, LargeOutputArrivesWhole) {
  ExecResult result = SpdyExec(ExecUrl(Exec({"bytes", "10000000"})), {});
  EXPECT_EQ(result.out.size(), 10000000u);
  EXPECT_EQ(result.error, R"({"metadata":{},"status":"Success"})");
}

// A client that does flow control (sends SETTINGS / WINDOW_UPDATE) gets no more than its window.
TEST_F(StreamingServerTest, SpdyHonoursTheClientsWindows) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"bytes", "5000"})), {"v4.channel.k8s.io"}), 101);
  client.SendRaw(spdy::EncodeSettings({{0, spdy::kSettingsInitialWindowSize, 1000}}));
  uint32_t error = client.OpenStream({{"streamtype", "error"}});
  uint32_t out = client.OpenStream({{"streamtype", "stdout"}});
  uint32_t err = client.OpenStream({{"streamtype", "stderr"}});
  ASSERT_TRUE(client.WaitReply(err));
  EXPECT_EQ(client.ReadAtLeast(out, 1000).size(), 1000u);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(client.Received(out), 1000u) << "the server overran the stream window";
  client.SendRaw(spdy::EncodeWindowUpdate(out, 4000));
  EXPECT_EQ(client.ReadAll(out).size(), 5000u);
  EXPECT_EQ(client.ReadAll(error), R"({"metadata":{},"status":"Success"})");
}

// As the runtime consumes stdin, the server opens the client's window again.
TEST_F(StreamingServerTest, SpdyGrantsWindowAsStdinIsConsumed) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"cat"}, /*in=*/true)), {"v4.channel.k8s.io"}), 101);
  uint32_t error = client.OpenStream({{"streamtype", "error"}});
  uint32_t in = client.OpenStream({{"streamtype", "stdin"}});
  uint32_t out = client.OpenStream({{"streamtype", "stdout"}});
  client.OpenStream({{"streamtype", "stderr"}});
  ASSERT_TRUE(client.WaitReply(in));
  EXPECT_TRUE(client.got_settings());
  // Send 3 MiB as a flow-controlled client would: never beyond the 1 MiB the server announced
  // plus what it granted since. Without window updates this stalls.
  const std::string chunk(64 * 1024, 'z');
  const int64_t initial = 1 << 20;
  int64_t sent = 0;
  for (int i = 0; i < 48; ++i) {
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (sent + static_cast<int64_t>(chunk.size()) > initial + client.window_granted(in) &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_LE(sent + static_cast<int64_t>(chunk.size()), initial + client.window_granted(in))
        << "no window granted after " << sent << " bytes";
    client.Send(in, chunk);
    sent += static_cast<int64_t>(chunk.size());
  }
  client.Send(in, "", /*fin=*/true);
  EXPECT_EQ(client.ReadAll(out).size(), 48 * chunk.size());
  EXPECT_EQ(client.ReadAll(error), R"({"metadata":{},"status":"Success"})");
  EXPECT_GE(client.window_granted(0), 2 * 1024 * 1024);
}

TEST_F(StreamingServerTest, TokensAreSingleUseAndUnknownOnesGet404) {
  std::string url = ExecUrl(Exec({"echo", "once"}));
  EXPECT_EQ(SpdyExec(url, {}).out, "once\n");
  EXPECT_EQ(SpdyExec(url, {}).http_status, 404);
  EXPECT_EQ(SpdyExec(server_->BaseUrl() + "/exec/nosuchtoken", {}).http_status, 404);
  EXPECT_EQ(SpdyExec(server_->BaseUrl() + "/other/x", {}).http_status, 404);
  // A token of one kind does not open another.
  std::string exec_url = ExecUrl(Exec({"echo"}));
  std::string token = exec_url.substr(exec_url.rfind('/') + 1);
  EXPECT_EQ(SpdyExec(server_->BaseUrl() + "/attach/" + token, {}).http_status, 404);
}

TEST_F(StreamingServerTest, ExpiredTokensGet404) {
  StreamingServerOptions options;
  options.token_ttl = absl::Milliseconds(100);
  StartServer(options);
  std::string url = ExecUrl(Exec({"echo"}));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(SpdyExec(url, {}).http_status, 404);
}

TEST_F(StreamingServerTest, ProtocolNegotiation) {
  SpdyTestClient missing;
  std::string response;
  EXPECT_EQ(missing.Connect(ExecUrl(Exec({"echo"})), {}, &response), 400);
  EXPECT_TRUE(absl::StrContains(response, "X-Stream-Protocol-Version is required"));
  SpdyTestClient unknown;
  EXPECT_EQ(unknown.Connect(ExecUrl(Exec({"echo"})), {"v9.channel.k8s.io"}, &response), 403);
  EXPECT_TRUE(absl::StrContains(response, "X-Accepted-Stream-Protocol-Versions"));
  SpdyTestClient preferred;
  EXPECT_EQ(preferred.Connect(ExecUrl(Exec({"echo"})),
                              {"v4.channel.k8s.io", "v3.channel.k8s.io"}, &response),
            101);
  EXPECT_TRUE(absl::StrContains(response, "X-Stream-Protocol-Version: v4.channel.k8s.io"));
  EXPECT_TRUE(absl::StrContains(response, "Upgrade: SPDY/3.1"));
}

TEST_F(StreamingServerTest, PlainRequestsAreAskedToUpgrade) {
  std::string path = testing::ParseUrl(ExecUrl(Exec({"echo"}))).path;
  std::string response =
      RawHttp(server_->BaseUrl(), "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 400")) << response;
  EXPECT_TRUE(absl::StrContains(response, "Upgrade request required")) << response;
}

// Frames sent in the same packet as the upgrade request (before the 101 arrives) are not lost.
TEST_F(StreamingServerTest, FramesRightBehindTheUpgradeRequest) {
  testing::ParsedUrl url = testing::ParseUrl(ExecUrl(Exec({"echo", "early"})));
  int fd = testing::Dial("127.0.0.1", url.port);
  ASSERT_GE(fd, 0);
  spdy::HeaderCompressor compressor;
  std::string bytes = "POST " + url.path +
                      " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                      "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
  bytes += spdy::EncodeSynStream(compressor, 1, 0, 0, {{"streamtype", "error"}});
  bytes += spdy::EncodeSynStream(compressor, 3, 0, 0, {{"streamtype", "stdout"}});
  bytes += spdy::EncodeSynStream(compressor, 5, 0, 0, {{"streamtype", "stderr"}});
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
  std::string received;
  char buf[4096];
  size_t head_end;
  while ((head_end = received.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    received.append(buf, n);
  }
  EXPECT_TRUE(absl::StartsWith(received, "HTTP/1.1 101")) << received;
  spdy::FrameDecoder decoder;
  decoder.Append(received.substr(head_end + 4));
  std::string out, error;
  bool goaway = false;
  while (!goaway) {
    absl::StatusOr<std::optional<spdy::Frame>> frame = decoder.Next();
    ASSERT_TRUE(frame.ok()) << frame.status();
    if (!frame->has_value()) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      ASSERT_GT(n, 0) << "connection closed before GOAWAY";
      decoder.Append(std::string(buf, n));
      continue;
    }
    if ((*frame)->type == spdy::FrameType::kGoAway) goaway = true;
    if ((*frame)->type != spdy::FrameType::kData) continue;
    if ((*frame)->stream_id == 1) error += (*frame)->data;
    if ((*frame)->stream_id == 3) out += (*frame)->data;
  }
  ::close(fd);
  EXPECT_EQ(out, "early\n");
  EXPECT_EQ(error, R"({"metadata":{},"status":"Success"})");
}

TEST_F(StreamingServerTest, UnknownStreamTypesAreRefused) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"echo", "ok"})), {"v4.channel.k8s.io"}), 101);
  uint32_t bogus = client.OpenStream({{"streamtype", "bogus"}});
  EXPECT_TRUE(client.WaitReset(bogus));
  // The session goes on with proper streams.
  uint32_t error = client.OpenStream({{"streamtype", "error"}});
  uint32_t out = client.OpenStream({{"streamtype", "stdout"}});
  uint32_t err = client.OpenStream({{"streamtype", "stderr"}});
  EXPECT_EQ(client.ReadAll(out), "ok\n");
  client.ReadAll(err);
  EXPECT_EQ(client.ReadAll(error), R"({"metadata":{},"status":"Success"})");
}

TEST_F(StreamingServerTest, MalformedFramesEndTheConnectionAndTheServerGoesOn) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"echo"})), {"v4.channel.k8s.io"}), 101);
  client.SendRaw(std::string("\x80\x03\x00\x01\x00\x00\x00\x0c", 8) + "garbagegarba");
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_TRUE(client.got_goaway());
  EXPECT_EQ(SpdyExec(ExecUrl(Exec({"echo", "still"})), {}).out, "still\n");
}

TEST_F(StreamingServerTest, GarbageInsteadOfHttpIsDropped) {
  int fd = testing::Dial("127.0.0.1", testing::ParseUrl(server_->BaseUrl()).port);
  ASSERT_GE(fd, 0);
  std::string junk(100000, '\x01');
  ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
  char buf[256];
  while (::recv(fd, buf, sizeof buf, 0) > 0) {
  }
  ::close(fd);
  EXPECT_EQ(SpdyExec(ExecUrl(Exec({"echo", "fine"})), {}).out, "fine\n");
}

TEST_F(StreamingServerTest, ClientVanishingMidSessionEndsIt) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"wait"})), {"v4.channel.k8s.io"}), 101);
  client.OpenStream({{"streamtype", "error"}});
  client.OpenStream({{"streamtype", "stdout"}});
  uint32_t err = client.OpenStream({{"streamtype", "stderr"}});
  ASSERT_TRUE(client.WaitReply(err));
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (runtime_.active() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(runtime_.active(), 1);
  client.Close();
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(20)));
  EXPECT_EQ(runtime_.saw_done(), 1);
}

TEST_F(StreamingServerTest, MissingStreamsTimeOut) {
  StreamingServerOptions options;
  options.stream_creation_timeout = absl::Milliseconds(300);
  StartServer(options);
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"echo"})), {"v4.channel.k8s.io"}), 101);
  client.OpenStream({{"streamtype", "error"}});
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(runtime_.active(), 0);
}

TEST_F(StreamingServerTest, StopEndsRunningSessions) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"wait"})), {"v4.channel.k8s.io"}), 101);
  client.OpenStream({{"streamtype", "error"}});
  client.OpenStream({{"streamtype", "stdout"}});
  client.OpenStream({{"streamtype", "stderr"}});
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (runtime_.active() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  server_->Stop();
  EXPECT_EQ(runtime_.active(), 0);
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(StreamingServerTest, SeveralAttachersShareTheContainer) {
  AttachRequest attach{"c1", false, true, true, false};
  std::vector<std::unique_ptr<SpdyTestClient>> clients;
  std::vector<uint32_t> ins, outs, errors;
  for (int i = 0; i < 3; ++i) {
    auto client = std::make_unique<SpdyTestClient>();
    ASSERT_EQ(client->Connect(*server_->GetAttachUrl(attach), {"v4.channel.k8s.io"}), 101);
    errors.push_back(client->OpenStream({{"streamtype", "error"}}));
    ins.push_back(client->OpenStream({{"streamtype", "stdin"}}));
    outs.push_back(client->OpenStream({{"streamtype", "stdout"}}));
    clients.push_back(std::move(client));
  }
  ASSERT_TRUE(runtime_.WaitAttachers(3, absl::Seconds(20)));
  runtime_.Emit("from the container\n");
  clients[1]->Send(ins[1], "typed by client 1\n");
  for (int i = 0; i < 3; ++i) {
    std::string want = "from the container\ntyped by client 1\n";
    EXPECT_EQ(clients[i]->ReadAtLeast(outs[i], want.size()), want) << i;
  }
  runtime_.ExitContainer();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(clients[i]->ReadAll(errors[i]), R"({"metadata":{},"status":"Success"})");
  }
}

TEST_F(StreamingServerTest, SpdyPortForwardWithParallelConnections) {
  std::string url = *server_->GetPortForwardUrl({"sandbox-1", {}});
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(url, {"portforward.k8s.io"}), 101);
  constexpr int kConnections = 8;
  std::vector<uint32_t> data(kConnections), errors(kConnections);
  for (int i = 0; i < kConnections; ++i) {
    std::string request_id = std::to_string(i);
    errors[i] = client.OpenStream(
        {{"streamtype", "error"}, {"port", "8080"}, {"requestid", request_id}});
    data[i] =
        client.OpenStream({{"streamtype", "data"}, {"port", "8080"}, {"requestid", request_id}});
  }
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(client.WaitReply(data[i]));
    client.Send(data[i], std::string(100000 + i, static_cast<char>('a' + i)));
  }
  for (int i = 0; i < kConnections; ++i) {
    client.Send(data[i], "", /*fin=*/true);
    std::string echoed = client.ReadAll(data[i]);
    EXPECT_EQ(echoed, std::string(100000 + i, static_cast<char>('a' + i))) << i;
    EXPECT_EQ(client.ReadAll(errors[i]), "") << i;
  }
  EXPECT_EQ(runtime_.forwards(), kConnections);
  EXPECT_EQ(runtime_.last_sandbox(), "sandbox-1");
}

TEST_F(StreamingServerTest, SpdyPortForwardReportsErrorsAndRejectsBadStreams) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(*server_->GetPortForwardUrl({"s1", {}}), {"portforward.k8s.io"}),
            101);
  uint32_t no_port = client.OpenStream({{"streamtype", "data"}, {"requestid", "0"}});
  EXPECT_TRUE(client.WaitReset(no_port));
  uint32_t bad_type = client.OpenStream({{"streamtype", "x"}, {"port", "1"}});
  EXPECT_TRUE(client.WaitReset(bad_type));
  uint32_t error =
      client.OpenStream({{"streamtype", "error"}, {"port", "1"}, {"requestid", "1"}});
  client.OpenStream({{"streamtype", "data"}, {"port", "1"}, {"requestid", "1"}});
  std::string message = client.ReadAll(error);
  EXPECT_TRUE(absl::StrContains(message, "error forwarding port 1")) << message;
  EXPECT_TRUE(absl::StrContains(message, "connection refused")) << message;
}

TEST_F(StreamingServerTest, WebSocketV5ExecWithStdinClose) {
  WsTestClient client;
  std::string chosen;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"cat"}, /*in=*/true)),
                           {"v5.channel.k8s.io", "v4.channel.k8s.io"}, &chosen),
            101);
  EXPECT_EQ(chosen, "v5.channel.k8s.io");
  client.Send(0, "piped through\n");
  client.SendRaw(std::string("\xff\x00", 2));  // CLOSE stdin
  std::vector<std::string> messages = client.ReadUntilClose();
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages[0], std::string(1, '\x01'));  // the empty "ready" message on stdout
  EXPECT_EQ(testing::ChannelData(messages, 1), "piped through\n");
  EXPECT_EQ(testing::ChannelData(messages, 3), R"({"metadata":{},"status":"Success"})");
}

TEST_F(StreamingServerTest, WebSocketV4ExitCodeAndResize) {
  WsTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"resize", "1"}, false, true)), {"v4.channel.k8s.io"}),
            101);
  client.Send(4, R"({"Width":100,"Height":30})");
  std::vector<std::string> messages = client.ReadUntilClose();
  EXPECT_EQ(testing::ChannelData(messages, 1), "100x30\n");

  WsTestClient failing;
  ASSERT_EQ(failing.Connect(ExecUrl(Exec({"exit", "2"})), {"v4.channel.k8s.io"}), 101);
  nlohmann::json status =
      nlohmann::json::parse(testing::ChannelData(failing.ReadUntilClose(), 3));
  EXPECT_EQ(status["reason"], "NonZeroExitCode");
  EXPECT_EQ(status["details"]["causes"][0]["message"], "2");
}

TEST_F(StreamingServerTest, WebSocketBase64Variants) {
  for (const char* protocol : {"v4.base64.channel.k8s.io", "base64.channel.k8s.io"}) {
    WsTestClient client;
    std::string chosen;
    ASSERT_EQ(client.Connect(ExecUrl(Exec({"echo", "b64"})), {protocol}, &chosen), 101);
    EXPECT_EQ(chosen, protocol);
    std::vector<std::string> messages = client.ReadUntilClose();
    EXPECT_EQ(testing::ChannelData(messages, 1, /*base64=*/true), "b64\n") << protocol;
  }
}

TEST_F(StreamingServerTest, WebSocketRefusesUnknownSubprotocols) {
  std::string path = testing::ParseUrl(ExecUrl(Exec({"echo"}))).path;
  std::string response = RawHttp(
      server_->BaseUrl(),
      "GET " + path +
          " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          "Sec-WebSocket-Protocol: v9.channel.k8s.io\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 400")) << response;
  EXPECT_TRUE(absl::StrContains(response, "not supported")) << response;
}

TEST_F(StreamingServerTest, WebSocketAttach) {
  AttachRequest attach{"c1", false, false, true, false};
  WsTestClient client;
  ASSERT_EQ(client.Connect(*server_->GetAttachUrl(attach), {"v5.channel.k8s.io"}), 101);
  ASSERT_TRUE(runtime_.WaitAttachers(1, absl::Seconds(20)));
  EXPECT_EQ(client.ReadMessage(), std::string(1, '\x01'));
  runtime_.Emit("log line\n");
  runtime_.ExitContainer();
  std::vector<std::string> messages = client.ReadUntilClose();
  EXPECT_EQ(testing::ChannelData(messages, 1), "log line\n");
  EXPECT_EQ(testing::ChannelData(messages, 3), R"({"metadata":{},"status":"Success"})");
}

TEST_F(StreamingServerTest, WebSocketPortForward) {
  std::string url = *server_->GetPortForwardUrl({"s1", {}});
  WsTestClient client;
  ASSERT_EQ(client.Connect(url + "?port=8080", {"v4.channel.k8s.io"}), 101);
  // Each channel first carries its port, little endian.
  std::string port("\x90\x1f", 2);
  EXPECT_EQ(client.ReadMessage(), std::string(1, '\0') + port);
  EXPECT_EQ(client.ReadMessage(), std::string(1, '\1') + port);
  client.Send(0, "ping over websocket");
  EXPECT_EQ(client.ReadMessage(), std::string(1, '\0') + "ping over websocket");
  client.Close();
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(20)));
}

TEST_F(StreamingServerTest, PortForwardEndsWhenTheClientVanishes) {
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(*server_->GetPortForwardUrl({"s1", {80}}), {"portforward.k8s.io"}),
            101);
  client.OpenStream({{"streamtype", "error"}, {"port", "80"}, {"requestid", "0"}});
  uint32_t data = client.OpenStream({{"streamtype", "data"}, {"port", "80"}, {"requestid", "0"}});
  client.Send(data, "half a conversation");
  EXPECT_EQ(client.ReadAtLeast(data, 19), "half a conversation");
  client.Close();
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(20)));
}

TEST_F(StreamingServerTest, WebSocketClientVanishingEndsTheSession) {
  WsTestClient client;
  ASSERT_EQ(client.Connect(ExecUrl(Exec({"wait"})), {"v4.channel.k8s.io"}), 101);
  EXPECT_EQ(client.ReadMessage(), std::string(1, '\x01'));
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (runtime_.active() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(runtime_.active(), 1);
  client.Close();
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(20)));
  EXPECT_EQ(runtime_.saw_done(), 1);
}

TEST_F(StreamingServerTest, BoundsPendingRequestsAndConnections) {
  StreamingServerOptions options;
  options.max_pending_requests = 2;
  options.max_connections = 1;
  StartServer(options);
  std::string first = ExecUrl(Exec({"wait"}));
  std::string second = ExecUrl(Exec({"echo", "x"}));
  EXPECT_EQ(server_->GetExecUrl(Exec({"echo"})).status().code(),
            absl::StatusCode::kResourceExhausted);
  SpdyTestClient holder;
  ASSERT_EQ(holder.Connect(first, {"v4.channel.k8s.io"}), 101);
  // The one upgraded connection allowed is taken: the next valid request is refused.
  EXPECT_EQ(SpdyExec(second, {}).http_status, 503);
  holder.Close();
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(20)));
}

// client-go's port-forward over WebSocket: SPDY frames carried in binary WebSocket messages.
TEST_F(StreamingServerTest, SpdyTunnelledInWebSocketPortForward) {
  WsTestClient client;
  std::string chosen;
  ASSERT_EQ(client.Connect(*server_->GetPortForwardUrl({"s1", {}}),
                           {"SPDY/3.1+portforward.k8s.io"}, &chosen),
            101);
  EXPECT_EQ(chosen, "SPDY/3.1+portforward.k8s.io");
  spdy::HeaderCompressor compressor;
  client.SendRaw(spdy::EncodeSynStream(compressor, 1, 0, 0,
                                       {{"streamtype", "error"}, {"port", "80"}, {"requestid", "0"}}));
  client.SendRaw(spdy::EncodeSynStream(compressor, 3, 0, 0,
                                       {{"streamtype", "data"}, {"port", "80"}, {"requestid", "0"}}));
  client.SendRaw(spdy::EncodeData(3, 0, "through the tunnel"));
  client.SendRaw(spdy::EncodeData(3, spdy::kFlagFin, ""));
  spdy::FrameDecoder decoder;
  std::string echoed;
  bool fin = false;
  while (!fin) {
    absl::StatusOr<std::optional<spdy::Frame>> frame = decoder.Next();
    ASSERT_TRUE(frame.ok()) << frame.status();
    if (!frame->has_value()) {
      std::string message = client.ReadMessage();
      ASSERT_FALSE(message.empty()) << "tunnel closed early";
      decoder.Append(message);
      continue;
    }
    if ((*frame)->type == spdy::FrameType::kData && (*frame)->stream_id == 3) {
      echoed += (*frame)->data;
      fin = ((*frame)->flags & spdy::kFlagFin) != 0;
    }
  }
  EXPECT_EQ(echoed, "through the tunnel");
  client.Close();
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(20)));
}

TEST_F(StreamingServerTest, ManyConcurrentExecs) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      ExecResult result = SpdyExec(ExecUrl(Exec({"echo", std::to_string(i)})), {});
      if (result.out == std::to_string(i) + "\n") ok.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 16);
}

}  // namespace
}  // namespace podvisor::streaming
