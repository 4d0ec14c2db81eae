// What an operator sees of a real podvisord: the Prometheus endpoint, config drop-ins and SIGHUP
// reloads, --print-config, systemd notifications and podvisorctl against the admin socket.

#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/support/daemon_process.h"
#include "test/support/metrics_scrape.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;
namespace v1 = runtime::v1;
namespace fs = std::filesystem;

// Runs a command; returns its exit code and fills `out` with stdout and stderr.
int RunCommand(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string CtlPath() { return std::string(PODVISOR_BIN_DIR) + "/podvisorctl"; }

// A TCP port on loopback free at the time of the call.
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class OperatorE2eTest : public ::testing::Test {
 protected:
  void TearDown() override { KillQemuUnder(dir_.path()); }

  // No guest kernel: the hypervisor's start fails at once and no VM is ever left behind.
  DaemonProcess::Options Options(const std::string& extra_config = "") {
    DaemonProcess::Options o;
    o.root_dir = dir_.Join("root");
    o.state_dir = dir_.Join("state");
    o.socket_path = dir_.Join("run/podvisor.sock");
    o.config_path = dir_.Join("etc/config.yaml");
    fs::create_directories(dir_.Join("etc"));
    std::ofstream(o.config_path) << "hypervisor:\n  accel: tcg\n  kernel: " << dir_.Join("none")
                                 << "\n  initrd: " << dir_.Join("none") << "\n"
                                 << extra_config;
    return o;
  }

  std::unique_ptr<DaemonProcess> Start(DaemonProcess::Options o) {
    auto d = std::make_unique<DaemonProcess>(std::move(o));
    std::string error;
    EXPECT_TRUE(d->Start(&error)) << error;
    return d;
  }

  static nlohmann::json StatusInfo(CriClient& cri, const std::string& key) {
    v1::StatusRequest req;
    req.set_verbose(true);
    v1::StatusResponse resp;
    grpc::Status s = cri.runtime().Status(CriClient::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!resp.info().contains(key)) return {};
    return nlohmann::json::parse(resp.info().at(key));
  }

  // host:port of the metrics endpoint, from Status verbose info.
  static std::string MetricsAddress(CriClient& cri) {
    nlohmann::json m = StatusInfo(cri, "metrics");
    const std::string text = m.value("url", "");
    absl::string_view url = text;
    if (!absl::ConsumePrefix(&url, "http://") || !absl::ConsumeSuffix(&url, "/metrics")) return "";
    return std::string(url);
  }

  // Waits until the daemon's log contains `text`.
  static bool WaitForLog(DaemonProcess& d, const std::string& text, int seconds = 20) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (absl::StrContains(d.ReadLog(), text)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  TempDir dir_;
};

TEST_F(OperatorE2eTest, MetricsAnswerOnLoopbackWithEveryFamily) {
  auto daemon = Start(Options());
  CriClient cri(daemon->endpoint());
  const std::string address = MetricsAddress(cri);
  ASSERT_TRUE(absl::StartsWith(address, "127.0.0.1:")) << address;
  EXPECT_EQ(StatusInfo(cri, "config")["metrics"]["address"], "127.0.0.1:0");

  v1::VersionResponse version;
  ASSERT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
  v1::CheckpointContainerResponse ck;
  EXPECT_FALSE(cri.runtime().CheckpointContainer(CriClient::Context().get(), {}, &ck).ok());
  v1::PullImageRequest pull;
  pull.mutable_image()->set_image("127.0.0.1:1/nothing/here:latest");  // nothing listens there
  v1::PullImageResponse pulled;
  EXPECT_FALSE(cri.image().PullImage(CriClient::Context(60).get(), pull, &pulled).ok());

  Scrape s = ScrapeMetrics(address);
  ASSERT_EQ(s.http_status, 200);
  EXPECT_THAT(s.content_type, HasSubstr("text/plain"));
  EXPECT_EQ(s.types["podvisor_cri_request_duration_seconds"], "histogram");
  EXPECT_GE(s.Value("podvisor_cri_request_duration_seconds_count",
                    {{"method", "Version"}, {"code", "OK"}}).value_or(0), 1);
  EXPECT_EQ(s.Value("podvisor_cri_request_duration_seconds_count",
                    {{"method", "CheckpointContainer"}, {"code", "UNIMPLEMENTED"}}), 1);
  EXPECT_EQ(s.Value("podvisor_image_pulls_total", {{"result", "error"}}), 1);
  EXPECT_EQ(s.Value("podvisor_image_pulls_total", {{"result", "success"}}), 0);
  EXPECT_EQ(s.types["podvisor_image_pull_bytes_total"], "counter");
  EXPECT_EQ(s.types["podvisor_image_pull_duration_seconds"], "histogram");
  EXPECT_EQ(s.Value("podvisor_sandboxes", {{"state", "ready"}, {"handler", "vm"}}), 0);
  EXPECT_EQ(s.Value("podvisor_containers", {{"state", "running"}, {"handler", "vm"}}), 0);
  EXPECT_EQ(s.Value("podvisor_agent_reconnects_total"), 0);
  EXPECT_EQ(s.Value("podvisor_agent_heartbeat_losses_total"), 0);
  // Families without a sample yet (VM starts and memory with no VM, sessions never opened) are
  // left out of the text; operator_vm_e2e_test and metrics_test see them.
  // No guest kernel here: the runtime never becomes ready, and says so.
  EXPECT_TRUE(WaitForLog(*daemon, "runtime not ready"));
  EXPECT_EQ(ScrapeMetrics(address).Value("podvisor_runtime_ready"), 0);
}

TEST_F(OperatorE2eTest, EmptyMetricsAddressDisablesTheEndpoint) {
  auto o = Options("metrics:\n  address: \"\"\n");
  o.metrics_address.clear();
  auto daemon = Start(o);
  CriClient cri(daemon->endpoint());
  nlohmann::json m = StatusInfo(cri, "metrics");
  EXPECT_EQ(m["enabled"], false);
  EXPECT_EQ(m["url"], "");
}

TEST_F(OperatorE2eTest, MetricsPortInUseStopsTheStartWithTheReason) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto o = Options();
  o.metrics_address = absl::StrCat("127.0.0.1:", ntohs(a.sin_port));
  DaemonProcess daemon(o);
  std::string error;
  EXPECT_FALSE(daemon.Start(&error, 10000));
  EXPECT_THAT(daemon.ReadLog(), HasSubstr("metrics: cannot listen on " + o.metrics_address));
  ::close(fd);
}

TEST_F(OperatorE2eTest, SighupAppliesLiveKeysAndNamesThoseNeedingARestart) {
  auto o = Options("log_level: info\nmetrics:\n  address: 127.0.0.1:0\n");
  o.metrics_address.clear();
  o.log_level.clear();
  auto daemon = Start(o);
  CriClient cri(daemon->endpoint());
  const std::string before = MetricsAddress(cri);
  ASSERT_EQ(ScrapeMetrics(before).http_status, 200);
  v1::VersionResponse version;
  ASSERT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
  EXPECT_FALSE(absl::StrContains(daemon->ReadLog(), "rpc Version OK"));  // info level

  const int port = FreePort();
  fs::create_directories(dir_.Join("etc/config.d"));
  std::ofstream(dir_.Join("etc/config.d/50-ops.yaml"))
      << "log_level: debug\nmetrics: {address: 127.0.0.1:" << port << "}\n"
      << "registry: {hosts: {docker.io: {mirrors: ['http://127.0.0.1:5999']}}}\n"
      << "hypervisor: {default_vcpus: 2}\n";
  daemon->Signal(SIGHUP);
  ASSERT_TRUE(WaitForLog(*daemon, "config reloaded: applied")) << daemon->ReadLog();
  const std::string log = daemon->ReadLog();
  EXPECT_THAT(log, HasSubstr("log_level"));
  EXPECT_THAT(log, HasSubstr("hypervisor.default_vcpus changed; it takes effect after a restart"));

  nlohmann::json config = StatusInfo(cri, "config");
  EXPECT_EQ(config["log_level"], "debug");
  EXPECT_EQ(config["hypervisor"]["default_vcpus"], 1);  // still what the VMs are started with
  EXPECT_EQ(config["registry"]["hosts"]["docker.io"]["mirrors"][0], "http://127.0.0.1:5999");
  EXPECT_EQ(MetricsAddress(cri), absl::StrCat("127.0.0.1:", port));
  EXPECT_EQ(ScrapeMetrics(absl::StrCat("127.0.0.1:", port)).http_status, 200);
  EXPECT_EQ(ScrapeMetrics(before).http_status, 0);  // the old endpoint is gone
  ASSERT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
  EXPECT_TRUE(WaitForLog(*daemon, "rpc Version OK"));  // debug level now

  // A broken drop-in changes nothing and the daemon keeps serving.
  std::ofstream(dir_.Join("etc/config.d/60-broken.yaml")) << "log_level: [oops\n";
  daemon->Signal(SIGHUP);
  ASSERT_TRUE(WaitForLog(*daemon, "config reload failed, nothing changed")) << daemon->ReadLog();
  EXPECT_THAT(daemon->ReadLog(), HasSubstr("60-broken.yaml"));
  EXPECT_EQ(StatusInfo(cri, "config")["log_level"], "debug");
  EXPECT_EQ(daemon->Stop(), 0);
}

TEST_F(OperatorE2eTest, PrintConfigShowsFileDropInsFlagsAndDefaults) {
  auto o = Options("hypervisor:\n  default_memory_mib: 300\n");
  fs::create_directories(dir_.Join("etc/config.d"));
  std::ofstream(dir_.Join("etc/config.d/10-cpu.yaml")) << "hypervisor: {default_vcpus: 2}\n";
  std::string out;
  ASSERT_EQ(RunCommand(absl::StrCat(DaemonProcess::BinaryPath(), " --config ", o.config_path,
                                    " --log-level warning --print-config"),
                       &out),
            0)
      << out;
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["hypervisor"]["default_memory_mib"], 300);
  EXPECT_EQ(j["hypervisor"]["default_vcpus"], 2);
  EXPECT_EQ(j["hypervisor"]["accel"], "tcg");
  EXPECT_EQ(j["log_level"], "warning");
  EXPECT_EQ(j["root_dir"], "/var/lib/podvisor");
  EXPECT_EQ(j["metrics"]["address"], "127.0.0.1:10251");
  EXPECT_FALSE(fs::exists(dir_.Join("root")));  // printing starts nothing
}

TEST_F(OperatorE2eTest, NotifiesSystemdWhenServingReloadingAndStopping) {
  const std::string path = dir_.Join("notify.sock");
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto next = [&] {
    char buf[256];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  };
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  auto daemon = Start(Options());
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_EQ(next(), "READY=1");
  EXPECT_TRUE(CanConnect(dir_.Join("run/podvisor.sock")));  // READY came once it served
  daemon->Signal(SIGHUP);
  EXPECT_EQ(next(), "RELOADING=1");
  EXPECT_EQ(next(), "READY=1");
  EXPECT_EQ(daemon->Stop(), 0);
  EXPECT_EQ(next(), "STOPPING=1");
  ::close(fd);
}

TEST_F(OperatorE2eTest, PodvisorctlTalksToTheRootOnlyAdminSocket) {
  auto daemon = Start(Options());
  struct stat st {};
  ASSERT_EQ(::stat(dir_.Join("state/admin.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const std::string ctl = absl::StrCat(CtlPath(), " --state-dir ", dir_.Join("state"));
  std::string out;
  EXPECT_EQ(RunCommand(ctl + " vms", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("POD ID"));
  EXPECT_EQ(RunCommand(ctl + " config", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out, nullptr, false)["root_dir"], dir_.Join("root"));
  EXPECT_EQ(RunCommand(ctl + " console 0123", &out), 3) << out;
  EXPECT_THAT(out, HasSubstr("no pod sandbox with id 0123"));
  EXPECT_EQ(RunCommand(ctl + " bogus", &out), 2) << out;
  EXPECT_EQ(RunCommand(absl::StrCat(CtlPath(), " --state-dir ", dir_.Join("nowhere"), " vms"),
                       &out),
            1);
  EXPECT_THAT(out, HasSubstr("cannot reach podvisord"));
}

}  // namespace
}  // namespace podvisor::testing
