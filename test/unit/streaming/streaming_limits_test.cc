// The streaming server's limits against hostile clients (docs/reliability.md): connections that
// never send a request, idle upgraded connections, floods of control frames, data beyond the
// announced windows, port-forward requests with too many ports or pairs.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "streaming/spdy_framer.h"
#include "streaming/streaming_server.h"
#include "test/fakes/fake_streaming_runtime.h"
#include "test/unit/streaming/streaming_test_client.h"

namespace podvisor::streaming {
namespace {

using testing::FakeStreamingRuntime;
using testing::SpdyExec;
using testing::SpdyTestClient;
using testing::WsTestClient;

ExecRequest Exec(std::vector<std::string> cmd, bool in = false) {
  ExecRequest request;
  request.container_id = "c1";
  request.cmd = std::move(cmd);
  request.in = in;
  request.out = true;
  request.err = true;
  return request;
}

// Waits (up to `timeout`) for the server to close `fd`: true on EOF or a reset, false if the
// connection is still open then. Whatever arrives before is discarded.
bool ServerCloses(int fd, absl::Duration timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(absl::ToInt64Seconds(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

// An upgraded SPDY connection whose responses the test reads only when it wants to.
int RawSpdyUpgrade(const std::string& url, const std::string& protocol, int rcvbuf = 0) {
  testing::ParsedUrl parsed = testing::ParseUrl(url);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(parsed.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  std::string request = absl::StrCat("POST ", parsed.path, " HTTP/1.1\r\nHost: x\r\n",
                                     "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
                                     "X-Stream-Protocol-Version: ", protocol, "\r\n\r\n");
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string head;
  char c;
  while (!absl::EndsWith(head, "\r\n\r\n") && ::recv(fd, &c, 1, 0) == 1) head.push_back(c);
  if (!absl::StartsWith(head, "HTTP/1.1 101")) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends a WebSocket upgrade for `url` with `protocol` and returns the response's status line.
std::string WsUpgradeStatus(const std::string& url, const std::string& protocol) {
  testing::ParsedUrl parsed = testing::ParseUrl(url);
  int fd = testing::Dial("127.0.0.1", parsed.port);
  if (fd < 0) return "";
  std::string request = absl::StrCat(
      "GET ", parsed.path,
      " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Protocol: ",
      protocol, "\r\n\r\n");
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char c;
  while (!absl::StrContains(response, "\r\n") && ::recv(fd, &c, 1, 0) == 1) response.push_back(c);
  ::close(fd);
  return response;
}

class StreamingLimitsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (server_) server_->Stop();
    for (int fd : fds_) ::close(fd);
    EXPECT_EQ(runtime_.active(), 0) << "a runtime call outlived the server";
  }

  void StartServer(StreamingServerOptions options) {
    absl::StatusOr<std::unique_ptr<StreamingServer>> server =
        StreamingServer::Start(options, &runtime_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  int Port() { return testing::ParseUrl(server_->BaseUrl()).port; }

  // A connection that sends nothing.
  int Idle() {
    int fd = testing::Dial("127.0.0.1", Port());
    if (fd >= 0) fds_.push_back(fd);
    return fd;
  }

  FakeStreamingRuntime runtime_;
  std::unique_ptr<StreamingServer> server_;
  std::vector<int> fds_;
};

// Item: sockets that never send a request must not hold the slots exec needs.
TEST_F(StreamingLimitsTest, SilentSocketsDoNotBlockExec) {
  StreamingServerOptions options;
  options.max_connections = 2;
  options.max_unauthenticated_connections = 4;
  options.max_unauthenticated_per_source = 100;
  StartServer(options);
  for (int i = 0; i < 10; ++i) ASSERT_GE(Idle(), 0);
  EXPECT_EQ(SpdyExec(*server_->GetExecUrl(Exec({"echo", "through"})), {}).out, "through\n");
  // The oldest silent sockets were closed to make room.
  EXPECT_TRUE(ServerCloses(fds_.front(), absl::Seconds(10)));
}

TEST_F(StreamingLimitsTest, OneSourceHoldsAtMostItsShareOfUnauthenticatedSlots) {
  StreamingServerOptions options;
  options.max_unauthenticated_per_source = 3;
  StartServer(options);
  for (int i = 0; i < 3; ++i) ASSERT_GE(Idle(), 0);
  int fourth = Idle();
  ASSERT_GE(fourth, 0);
  EXPECT_TRUE(ServerCloses(fourth, absl::Seconds(10)));
  for (int fd : fds_) ::close(fd);
  fds_.clear();
  // Closed sockets give their slots back.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  std::string out;
  while (out.empty() && absl::Now() < deadline) {
    out = SpdyExec(*server_->GetExecUrl(Exec({"echo", "again"})), {}).out;
  }
  EXPECT_EQ(out, "again\n");
}

TEST_F(StreamingLimitsTest, RequestHeadMustArriveWithinTheHeaderTimeout) {
  StreamingServerOptions options;
  options.request_header_timeout = absl::Milliseconds(200);
  StartServer(options);
  int fd = Idle();
  ASSERT_GE(fd, 0);
  std::string partial = "POST /exec/x HTTP/1.1\r\nHost: x\r\n";  // and then nothing
  ::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
  EXPECT_TRUE(ServerCloses(fd, absl::Seconds(10)));
}

TEST_F(StreamingLimitsTest, IdleUpgradedConnectionsAreClosed) {
  StreamingServerOptions options;
  options.idle_timeout = absl::Milliseconds(300);
  StartServer(options);
  SpdyTestClient spdy_client;
  ASSERT_EQ(spdy_client.Connect(*server_->GetPortForwardUrl({"s1", {}}), {"portforward.k8s.io"}),
            101);
  EXPECT_TRUE(spdy_client.WaitClosed(absl::Seconds(10)));

  WsTestClient ws_client;
  ASSERT_EQ(ws_client.Connect(*server_->GetPortForwardUrl({"s1", {}}) + "?port=80",
                              {"v4.channel.k8s.io"}),
            101);
  // The two port messages, then the server's close.
  EXPECT_EQ(ws_client.ReadUntilClose(absl::Seconds(10)).size(), 2u);
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(10)));
}

TEST_F(StreamingLimitsTest, TrafficKeepsAConnectionFromIdling) {
  StreamingServerOptions options;
  options.idle_timeout = absl::Seconds(2);
  StartServer(options);
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(*server_->GetPortForwardUrl({"s1", {}}), {"portforward.k8s.io"}), 101);
  client.OpenStream({{"streamtype", "error"}, {"port", "80"}, {"requestid", "0"}});
  uint32_t data = client.OpenStream({{"streamtype", "data"}, {"port", "80"}, {"requestid", "0"}});
  std::string echoed;
  for (int i = 0; i < 10; ++i) {
    client.Send(data, "tick");
    echoed = client.ReadAtLeast(data, 4 * (i + 1));
    absl::SleepFor(absl::Milliseconds(300));
  }
  EXPECT_EQ(echoed.size(), 40u);
  client.Send(data, "", /*fin=*/true);
  EXPECT_EQ(client.ReadAll(data).size(), 40u);
}

// HTTP/2's ping flood (CVE-2019-9512): a client that sends PINGs and never reads the replies.
TEST_F(StreamingLimitsTest, PingFloodFromAClientThatDoesNotReadIsCutOff) {
  StreamingServerOptions options;
  options.max_queued_control_frames = 64;
  StartServer(options);
  int fd = RawSpdyUpgrade(*server_->GetPortForwardUrl({"s1", {}}), "portforward.k8s.io", 4096);
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  std::string pings;
  for (uint32_t id = 1; id < 2 * 20000; id += 2) pings += spdy::EncodePing(id);
  // 240 KB of pings, 50 times over: far more replies than the socket buffers hold.
  for (int round = 0; round < 50; ++round) {
    if (::send(fd, pings.data(), pings.size(), MSG_NOSIGNAL) < 0) break;
  }
  EXPECT_TRUE(ServerCloses(fd, absl::Seconds(10)));
  // The server goes on.
  EXPECT_EQ(SpdyExec(*server_->GetExecUrl(Exec({"echo", "ok"})), {}).out, "ok\n");
}

// A client that does flow control may not send beyond the window the server announced.
TEST_F(StreamingLimitsTest, DataBeyondTheReceiveWindowResetsTheStream) {
  StartServer({});
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(*server_->GetExecUrl(Exec({"wait"}, /*in=*/true)),
                           {"v4.channel.k8s.io"}),
            101);
  client.SendRaw(spdy::EncodeWindowUpdate(0, 1));  // shows it does flow control
  client.OpenStream({{"streamtype", "error"}});
  uint32_t in = client.OpenStream({{"streamtype", "stdin"}});
  client.OpenStream({{"streamtype", "stdout"}});
  uint32_t err = client.OpenStream({{"streamtype", "stderr"}});
  ASSERT_TRUE(client.WaitReply(err));
  // "wait" never reads stdin, so no window is granted back.
  std::string chunk(32 * 1024, 'i');
  for (int i = 0; i < 34; ++i) client.Send(in, chunk);  // 1 MiB + 64 KiB
  EXPECT_TRUE(client.WaitReset(in, absl::Seconds(10)));
  client.Close();
  EXPECT_TRUE(runtime_.WaitIdle(absl::Seconds(20)));
}

TEST_F(StreamingLimitsTest, ResetPortForwardStreamFreesItsRequestIdAtOnce) {
  StartServer({});
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(*server_->GetPortForwardUrl({"s1", {}}), {"portforward.k8s.io"}), 101);
  uint32_t first = client.OpenStream({{"streamtype", "data"}, {"port", "80"}, {"requestid", "7"}});
  ASSERT_TRUE(client.WaitReply(first));
  client.SendRaw(spdy::EncodeRstStream(first, spdy::kCancel));
  // The same request id again, a whole pair this time: served, not refused as a duplicate.
  uint32_t error =
      client.OpenStream({{"streamtype", "error"}, {"port", "80"}, {"requestid", "7"}});
  uint32_t data = client.OpenStream({{"streamtype", "data"}, {"port", "80"}, {"requestid", "7"}});
  ASSERT_TRUE(client.WaitReply(data));
  client.Send(data, "second try", /*fin=*/true);
  EXPECT_EQ(client.ReadAll(data), "second try");
  EXPECT_EQ(client.ReadAll(error), "");
  EXPECT_EQ(runtime_.forwards(), 1);
}

TEST_F(StreamingLimitsTest, ForwardsPerConnectionAreBounded) {
  StreamingServerOptions options;
  options.max_forwards_per_connection = 2;
  StartServer(options);
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(*server_->GetPortForwardUrl({"s1", {}}), {"portforward.k8s.io"}), 101);
  std::vector<uint32_t> data;
  for (int i = 0; i < 2; ++i) {
    std::string id = absl::StrCat(i);
    client.OpenStream({{"streamtype", "error"}, {"port", "80"}, {"requestid", id}});
    data.push_back(client.OpenStream({{"streamtype", "data"}, {"port", "80"}, {"requestid", id}}));
    ASSERT_TRUE(client.WaitReply(data.back()));
  }
  uint32_t third = client.OpenStream({{"streamtype", "error"}, {"port", "80"}, {"requestid", "2"}});
  EXPECT_TRUE(client.WaitReset(third));
  // Once one ends, a new one is taken.
  client.Send(data[0], "done", /*fin=*/true);
  EXPECT_EQ(client.ReadAll(data[0]), "done");
  bool accepted = false;
  for (int i = 3; i < 200 && !accepted; ++i) {
    uint32_t next = client.OpenStream(
        {{"streamtype", "error"}, {"port", "80"}, {"requestid", absl::StrCat(i)}});
    accepted = client.WaitReply(next, absl::Seconds(5));
    if (!accepted) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(accepted);
}

TEST_F(StreamingLimitsTest, PortForwardRequestsWithTooManyPortsAreRefused) {
  StreamingServerOptions options;
  options.max_ports_per_request = 4;
  StartServer(options);
  absl::StatusOr<std::string> url = server_->GetPortForwardUrl({"s1", {1, 2, 3, 4, 5}});
  EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(url.status().message(), "max_ports_per_request"))
      << url.status();
  EXPECT_EQ(server_->CheckPortForward({"s1", {1, 2, 3, 4}}).code(), absl::StatusCode::kOk);
  // The WebSocket client names its ports in the URL.
  EXPECT_EQ(WsUpgradeStatus(*server_->GetPortForwardUrl({"s1", {}}) + "?port=1,2,3,4,5",
                            "v4.channel.k8s.io"),
            "HTTP/1.1 400 Bad Request\r\n");
  EXPECT_EQ(WsUpgradeStatus(*server_->GetPortForwardUrl({"s1", {}}) + "?port=1,2,3,4",
                            "v4.channel.k8s.io"),
            "HTTP/1.1 101 Switching Protocols\r\n");
}

// Two one-byte channels per port: port 129's channels would be 0 and 1 again.
TEST_F(StreamingLimitsTest, WebSocketChannelNumbersDoNotWrap) {
  StreamingServerOptions options;
  options.max_ports_per_request = 1000;  // more than any framing can number
  StartServer(options);
  std::vector<int32_t> ports;
  for (int32_t p = 1; p <= 129; ++p) ports.push_back(p);
  EXPECT_EQ(server_->GetPortForwardUrl({"s1", ports}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string query = "?port=1";
  for (int p = 2; p <= 129; ++p) absl::StrAppend(&query, "&port=", p);
  EXPECT_EQ(WsUpgradeStatus(*server_->GetPortForwardUrl({"s1", {}}) + query, "v4.channel.k8s.io"),
            "HTTP/1.1 400 Bad Request\r\n");
  // base64 numbers channels with an ASCII digit from '0': 104 ports at most.
  std::string query105 = "?port=1";
  for (int p = 2; p <= 105; ++p) absl::StrAppend(&query105, "&port=", p);
  EXPECT_EQ(WsUpgradeStatus(*server_->GetPortForwardUrl({"s1", {}}) + query105,
                            "v4.base64.channel.k8s.io"),
            "HTTP/1.1 400 Bad Request\r\n");
  // 128 binary ports fit exactly: channels 0..255.
  std::string query128 = "?port=1";
  for (int p = 2; p <= 128; ++p) absl::StrAppend(&query128, "&port=", p);
  EXPECT_EQ(WsUpgradeStatus(*server_->GetPortForwardUrl({"s1", {}}) + query128,
                            "v4.channel.k8s.io"),
            "HTTP/1.1 101 Switching Protocols\r\n");
}

}  // namespace
}  // namespace podvisor::streaming
