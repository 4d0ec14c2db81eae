// Exec, attach and port-forward through the real daemon into a real pod VM: podvisord pulls a
// busybox image from a docker-registry on loopback, boots a QEMU guest (TCG) and runs containers
// in it; the CRI Exec/Attach/PortForward URLs are then used as kubelet and crictl use them
// (SPDY/3.1 with the client-go stream layout, and a v5 WebSocket).

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/support/daemon_process.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"
#include "test/unit/streaming/streaming_test_client.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;
namespace v1 = runtime::v1;
namespace fs = std::filesystem;

constexpr char kImage[] = "docker.io/library/busybox:1.36";

std::string GuestDir() { return std::string(PODVISOR_BIN_DIR) + "/../guest"; }

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class StreamingVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(GuestDir() + "/vmlinux") || !fs::exists(GuestDir() + "/initrd.img")) {
      GTEST_FAIL() << "no guest image in " << GuestDir() << ": run deploy/guest/build.sh";
    }
    // A one-layer busybox image: the static busybox binary and the applets the test uses.
    std::string busybox = ReadAll("/bin/busybox");
    ASSERT_FALSE(busybox.empty()) << "busybox-static is not installed";
    std::vector<TarEntry> entries = {Dir("bin"), File("bin/busybox", busybox, 0755), Dir("tmp"),
                                     Dir("etc"), File("etc/passwd", "root:x:0:0::/:/bin/sh\n")};
    entries.push_back(Dir("www"));
    entries.push_back(File("www/index.html", "hello from the pod\n", 0644));
    for (const char* applet :
         {"sh", "echo", "sleep", "true", "false", "cat", "test", "httpd", "wget", "tty"}) {
      entries.push_back(Symlink(absl::StrCat("bin/", applet), "busybox"));
    }
    std::string error;
    registry_ = std::make_unique<LocalRegistry>(dir_.Join("registry"), LocalRegistry::Options{});
    ASSERT_TRUE(registry_->Start(&error)) << error;
    OciLayout layout(dir_.Join("layout"));
    nlohmann::json desc =
        layout.AddImage({OciLayout::MakeLayer(entries, Compression::kGzip)}, "amd64", "");
    layout.Tag("1.36", desc);
    ASSERT_EQ(Push(layout, "1.36", registry_->host() + "/library/busybox:1.36"), "");

    const int n = getpid() % 200 + 20;
    bridge_ = absl::StrCat("pvstr", getpid() % 100000);
    fs::create_directories(dir_.Join("cni"));
    std::ofstream(dir_.Join("cni/10-test.conflist"))
        << absl::StrCat(R"({
  "cniVersion": "1.0.0", "name": "pvstr-test",
  "plugins": [
    {"type": "bridge", "bridge": ")",
                        bridge_, R"(", "isGateway": true,
     "ipam": {"type": "host-local", "dataDir": ")",
                        dir_.Join("ipam"), R"(",
              "ranges": [[{"subnet": "10.217.)",
                        n, R"(.0/24"}]]}},
    {"type": "loopback"}
  ]
})");
    std::ofstream(dir_.Join("config.yaml"))
        << "hypervisor:\n  accel: tcg\n  boot_timeout_seconds: 90\n"
        << "cni:\n  conf_dir: " << dir_.Join("cni") << "\n"
        << "registry:\n  hosts:\n    docker.io:\n      mirrors: [\"http://" << registry_->host()
        << "\"]\n";
    DaemonProcess::Options o;
    o.root_dir = dir_.Join("root");
    o.state_dir = dir_.Join("st");
    o.socket_path = dir_.Join("pv.sock");
    o.config_path = dir_.Join("config.yaml");
    o.log_path = dir_.Join("podvisord.log");
    daemon_ = std::make_unique<DaemonProcess>(o);
    ASSERT_TRUE(daemon_->Start(&error)) << error;
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());

    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(kImage);
    v1::PullImageResponse pulled;
    grpc::Status s = cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled);
    ASSERT_TRUE(s.ok()) << s.error_message();

    pod_config_.mutable_metadata()->set_name("pod");
    pod_config_.mutable_metadata()->set_namespace_("default");
    pod_config_.mutable_metadata()->set_uid("uid-pod");
    pod_config_.set_hostname("pod");
    pod_config_.set_log_directory(dir_.Join("logs"));
    v1::RunPodSandboxRequest run;
    *run.mutable_config() = pod_config_;
    v1::RunPodSandboxResponse ran;
    s = cri_->runtime().RunPodSandbox(CriClient::Context(300).get(), run, &ran);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
    pod_ = ran.pod_sandbox_id();
  }

  void TearDown() override {
    if (cri_ && !pod_.empty()) {
      v1::RemovePodSandboxRequest req;
      req.set_pod_sandbox_id(pod_);
      v1::RemovePodSandboxResponse resp;
      grpc::Status s = cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    daemon_.reset();
    std::string cmd = absl::StrCat("ip link del ", bridge_, " 2>/dev/null");
    (void)::system(cmd.c_str());
  }

  v1::ContainerConfig Config(const std::string& name, std::vector<std::string> command) {
    v1::ContainerConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_image()->set_image(kImage);
    for (const std::string& a : command) c.add_command(a);
    c.set_log_path(name + ".log");
    // As kubelet asks for a pod without shareProcessNamespace: the container's own PID namespace.
    c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(
        v1::CONTAINER);
    return c;
  }

  std::string Create(const v1::ContainerConfig& config) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod_);
    *req.mutable_config() = config;
    *req.mutable_sandbox_config() = pod_config_;
    v1::CreateContainerResponse resp;
    grpc::Status s = cri_->runtime().CreateContainer(CriClient::Context(120).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
    return resp.container_id();
  }

  grpc::Status Start(const std::string& id) {
    v1::StartContainerRequest req;
    req.set_container_id(id);
    v1::StartContainerResponse resp;
    return cri_->runtime().StartContainer(CriClient::Context(120).get(), req, &resp);
  }

  std::string Run(const v1::ContainerConfig& config) {
    std::string id = Create(config);
    grpc::Status s = Start(id);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return id;
  }

  v1::ContainerStatus Status(const std::string& id) {
    v1::ContainerStatusRequest req;
    req.set_container_id(id);
    v1::ContainerStatusResponse resp;
    grpc::Status s = cri_->runtime().ContainerStatus(CriClient::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.status();
  }

  // Polls until the container exited (generous: TCG on a loaded machine).
  v1::ContainerStatus WaitExited(const std::string& id) {
    v1::ContainerStatus st;
    for (int i = 0; i < 600; ++i) {
      st = Status(id);
      if (st.state() == v1::CONTAINER_EXITED) return st;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "container " << id << " did not exit";
    return st;
  }

  grpc::Status Stop(const std::string& id, int64_t timeout) {
    v1::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(timeout);
    v1::StopContainerResponse resp;
    return cri_->runtime().StopContainer(CriClient::Context(120).get(), req, &resp);
  }

  grpc::Status Exec(const std::string& id, std::vector<std::string> cmd, int64_t timeout,
                    v1::ExecSyncResponse* resp) {
    v1::ExecSyncRequest req;
    req.set_container_id(id);
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_timeout(timeout);
    return cri_->runtime().ExecSync(CriClient::Context(120).get(), req, resp);
  }

  std::string ExecUrl(const std::string& id, std::vector<std::string> cmd, bool in, bool tty) {
    v1::ExecRequest req;
    req.set_container_id(id);
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(true);
    req.set_stderr(!tty);
    req.set_tty(tty);
    v1::ExecResponse resp;
    grpc::Status s = cri_->runtime().Exec(CriClient::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.url();
  }

  ExecResult RunExec(const std::string& id, std::vector<std::string> cmd, ExecOptions options) {
    options.err = !options.tty;
    return SpdyExec(ExecUrl(id, std::move(cmd), options.in, options.tty), options);
  }

  // A container that keeps running.
  std::string Sleeper() {
    v1::ContainerConfig c = Config("sleeper", {"sleep", "3600"});
    std::string id = Run(c);
    EXPECT_EQ(Status(id).state(), v1::CONTAINER_RUNNING);
    return id;
  }

  TempDir dir_;
  std::string bridge_;
  std::unique_ptr<LocalRegistry> registry_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
  v1::PodSandboxConfig pod_config_;
  std::string pod_;
};

constexpr char kSuccess[] = R"({"metadata":{},"status":"Success"})";

TEST_F(StreamingVmTest, ExecOutputExitCodesStdinAndTty) {
  std::string id = Sleeper();

  ExecResult r = RunExec(id, {"echo", "hi"}, {});
  EXPECT_EQ(r.http_status, 101);
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.error, kSuccess);

  r = RunExec(id, {"sh", "-c", "echo oops >&2; exit 3"}, {});
  EXPECT_EQ(r.err, "oops\n");
  nlohmann::json status = nlohmann::json::parse(r.error, nullptr, false);
  ASSERT_FALSE(status.is_discarded()) << r.error;
  EXPECT_EQ(status["status"], "Failure");
  EXPECT_EQ(status["reason"], "NonZeroExitCode");
  EXPECT_EQ(status["details"]["causes"][0]["reason"], "ExitCode");
  EXPECT_EQ(status["details"]["causes"][0]["message"], "3");

  // `false`: exit code 1, as `crictl exec CTR false` reports it.
  r = RunExec(id, {"false"}, {});
  status = nlohmann::json::parse(r.error, nullptr, false);
  ASSERT_FALSE(status.is_discarded()) << r.error;
  EXPECT_EQ(status["details"]["causes"][0]["message"], "1");

  // stdin piped to cat, end of input forwarded.
  ExecOptions piped;
  piped.in = true;
  piped.stdin_data = std::string(100000, 'x') + "\nlast line\n";
  r = RunExec(id, {"cat"}, piped);
  EXPECT_EQ(r.out, piped.stdin_data);
  EXPECT_EQ(r.error, kSuccess);

  // A terminal: the process sees one, newlines come back as CRLF.
  ExecOptions tty;
  tty.tty = true;
  r = RunExec(id, {"sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty"}, tty);
  EXPECT_EQ(r.out, "is-a-tty\r\n");
  EXPECT_EQ(r.error, kSuccess);

  // An interactive shell on a terminal, fed and then told to exit.
  ExecOptions shell;
  shell.tty = true;
  shell.in = true;
  shell.close_stdin = false;
  shell.stdin_data = "echo $((6 * 7))\nexit 5\n";
  shell.resizes = {{100, 40}};
  r = RunExec(id, {"sh"}, shell);
  EXPECT_THAT(r.out, HasSubstr("42\r\n"));
  status = nlohmann::json::parse(r.error, nullptr, false);
  ASSERT_FALSE(status.is_discarded()) << r.error;
  EXPECT_EQ(status["details"]["causes"][0]["message"], "5");

  // The same over a WebSocket (kubectl 1.30+): stdin through cat, then its close.
  WsTestClient ws;
  std::string chosen;
  ASSERT_EQ(ws.Connect(ExecUrl(id, {"cat"}, /*in=*/true, /*tty=*/false),
                       {"v5.channel.k8s.io", "v4.channel.k8s.io"}, &chosen),
            101);
  EXPECT_EQ(chosen, "v5.channel.k8s.io");
  ws.Send(0, "over a websocket\n");
  ws.SendRaw(std::string("\xff\x00", 2));  // v5: close stdin
  std::vector<std::string> messages = ws.ReadUntilClose(absl::Seconds(60));
  EXPECT_EQ(ChannelData(messages, 1), "over a websocket\n");
  EXPECT_EQ(ChannelData(messages, 3), kSuccess);

  // Not runnable: the error reaches the client.
  r = RunExec(id, {"/no/such/binary"}, {});
  EXPECT_THAT(r.error, HasSubstr("Failure")) << r.error;
}

TEST_F(StreamingVmTest, ExecAndAttachRefuseStoppedContainers) {
  std::string id = Run(Config("done", {"true"}));
  WaitExited(id);
  v1::ExecRequest req;
  req.set_container_id(id);
  req.add_cmd("true");
  req.set_stdout(true);
  v1::ExecResponse resp;
  grpc::Status s = cri_->runtime().Exec(CriClient::Context().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  v1::AttachRequest attach;
  attach.set_container_id(id);
  attach.set_stdout(true);
  v1::AttachResponse attached;
  s = cri_->runtime().Attach(CriClient::Context().get(), attach, &attached);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
}

TEST_F(StreamingVmTest, AttachToStdinAndOutput) {
  // A container that answers each line of its stdin; stdin_once: the attacher's end of input
  // ends it.
  v1::ContainerConfig c =
      Config("echoer", {"sh", "-c", "while read l; do echo \"got $l\"; done; echo bye >&2"});
  c.set_stdin(true);
  c.set_stdin_once(true);
  std::string id = Run(c);

  v1::AttachRequest req;
  req.set_container_id(id);
  req.set_stdin(true);
  req.set_stdout(true);
  req.set_stderr(true);
  v1::AttachResponse resp;
  grpc::Status s = cri_->runtime().Attach(CriClient::Context().get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ExecOptions options;
  options.in = true;
  options.stdin_data = "one\ntwo\n";
  ExecResult r = SpdyExec(resp.url(), options);
  EXPECT_EQ(r.http_status, 101);
  EXPECT_EQ(r.out, "got one\ngot two\n");
  EXPECT_EQ(r.err, "bye\n");
  EXPECT_EQ(r.error, kSuccess);
  v1::ContainerStatus st = WaitExited(id);
  EXPECT_EQ(st.exit_code(), 0);
  // The log file saw the same output.
  std::string log = ReadAll(dir_.Join("logs/echoer.log"));
  EXPECT_THAT(log, HasSubstr("stdout F got two"));
}

TEST_F(StreamingVmTest, PortForwardParallelRequestsToHttpd) {
  std::string id = Run(Config("web", {"httpd", "-f", "-p", "8080", "-h", "/www"}));
  ASSERT_EQ(Status(id).state(), v1::CONTAINER_RUNNING);
  // httpd listens soon after the start: wait with exec (wget from inside the pod).
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    ExecResult probe = RunExec(id, {"wget", "-q", "-O", "-", "http://127.0.0.1:8080/"}, {});
    up = probe.error == kSuccess;
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  ASSERT_TRUE(up) << "httpd did not come up";

  v1::PortForwardRequest req;
  req.set_pod_sandbox_id(pod_);
  req.add_port(8080);
  v1::PortForwardResponse resp;
  grpc::Status s = cri_->runtime().PortForward(CriClient::Context().get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  SpdyTestClient client;
  ASSERT_EQ(client.Connect(resp.url(), {"portforward.k8s.io"}), 101);
  constexpr int kRequests = 2;
  std::vector<uint32_t> data(kRequests), errors(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    std::string request_id = std::to_string(i);
    errors[i] =
        client.OpenStream({{"streamtype", "error"}, {"port", "8080"}, {"requestid", request_id}});
    data[i] =
        client.OpenStream({{"streamtype", "data"}, {"port", "8080"}, {"requestid", request_id}});
  }
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(client.WaitReply(data[i]));
    client.Send(data[i], "GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n", /*fin=*/true);
  }
  for (int i = 0; i < kRequests; ++i) {
    std::string response = client.ReadAll(data[i], absl::Seconds(60));
    EXPECT_THAT(response, HasSubstr("200 OK")) << i;
    EXPECT_THAT(response, HasSubstr("hello from the pod\n")) << i;
    EXPECT_EQ(client.ReadAll(errors[i]), "") << i;
  }

  // A port nobody listens on: an error on the connection's error stream.
  uint32_t error = client.OpenStream({{"streamtype", "error"}, {"port", "9"}, {"requestid", "9"}});
  uint32_t bad = client.OpenStream({{"streamtype", "data"}, {"port", "9"}, {"requestid", "9"}});
  (void)bad;
  EXPECT_NE(client.ReadAll(error, absl::Seconds(60)), "");
  client.Close();
}

}  // namespace
}  // namespace podvisor::testing
