// The real podvisord on a socket and root of the test's own, driven through the CRI client.

// First: the CRI Signal enum has values named SIGABRT, SIGKILL, ... which <signal.h> (pulled in
// by <sys/wait.h> and others) defines as macros. The generated header must be parsed before them.
#include "test/support/cri_client.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <grpcpp/generic/generic_stub.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/support/daemon_process.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;
namespace v1 = runtime::v1;

class DaemonE2eTest : public ::testing::Test {
 protected:
  // These tests kill daemons at any moment, also while the hypervisor warms up with a VM.
  void TearDown() override { KillQemuUnder(dir_.path()); }

  DaemonProcess::Options Options(const std::string& name = "a") {
    DaemonProcess::Options o;
    o.root_dir = dir_.Join(name + "-root");
    o.state_dir = dir_.Join(name + "-state");
    o.socket_path = dir_.Join(name + "-run/podvisor.sock");
    // These tests boot no pod, and kill daemons at any moment: with no guest kernel the
    // hypervisor's start-up fails at once (RuntimeReady false) and never leaves a VM behind.
    o.config_path = dir_.Join(name + "-config.yaml");
    std::ofstream(o.config_path) << "hypervisor:\n  accel: tcg\n  kernel: " << dir_.Join("no-kernel")
                                 << "\n  initrd: " << dir_.Join("no-initrd") << "\n";
    return o;
  }

  std::unique_ptr<DaemonProcess> StartDaemon(DaemonProcess::Options o) {
    auto d = std::make_unique<DaemonProcess>(std::move(o));
    std::string error;
    EXPECT_TRUE(d->Start(&error)) << error;
    return d;
  }

  TempDir dir_;
};

TEST_F(DaemonE2eTest, AnswersKubeletsFirstCalls) {
  auto daemon = StartDaemon(Options());
  CriClient cri(daemon->endpoint());

  v1::VersionResponse version;
  ASSERT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
  EXPECT_EQ(version.runtime_name(), "podvisor");
  EXPECT_EQ(version.runtime_api_version(), "v1");
  EXPECT_EQ(version.version(), "0.1.0");
  EXPECT_FALSE(version.runtime_version().empty());

  v1::StatusRequest status_req;
  status_req.set_verbose(true);
  v1::StatusResponse status;
  ASSERT_TRUE(cri.runtime().Status(CriClient::Context().get(), status_req, &status).ok());
  std::map<std::string, v1::RuntimeCondition> conditions;
  for (const auto& c : status.status().conditions()) conditions[c.type()] = c;
  ASSERT_TRUE(conditions.contains("RuntimeReady"));
  ASSERT_TRUE(conditions.contains("NetworkReady"));
  if (!conditions["NetworkReady"].status()) {
    EXPECT_FALSE(conditions["NetworkReady"].reason().empty());
    EXPECT_FALSE(conditions["NetworkReady"].message().empty());
  }
  ASSERT_TRUE(status.info().contains("config"));
  nlohmann::json config = nlohmann::json::parse(status.info().at("config"));
  EXPECT_EQ(config["root_dir"], dir_.Join("a-root"));

  v1::RuntimeConfigResponse rc;
  ASSERT_TRUE(cri.runtime().RuntimeConfig(CriClient::Context().get(), {}, &rc).ok());
  EXPECT_EQ(rc.linux().cgroup_driver(), v1::CGROUPFS);

  v1::ListPodSandboxResponse pods;
  ASSERT_TRUE(cri.runtime().ListPodSandbox(CriClient::Context().get(), {}, &pods).ok());
  EXPECT_EQ(pods.items_size(), 0);
}

// Waits until Status reports RuntimeReady true; false on timeout.
bool WaitRuntimeReady(CriClient& cri, int timeout_s) {
  for (int i = 0; i < timeout_s * 10; ++i) {
    v1::StatusResponse status;
    if (cri.runtime().Status(CriClient::Context().get(), {}, &status).ok()) {
      for (const auto& c : status.status().conditions()) {
        if (c.type() == "RuntimeReady" && c.status()) return true;
      }
    }
    usleep(100 * 1000);
  }
  return false;
}

TEST_F(DaemonE2eTest, WarmRestartUsesTheCachedKvmProbeAndAChangedImageProbesAgain) {
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "no usable /dev/kvm: auto never probes";
  const std::string guest =
      std::filesystem::path(DaemonProcess::BinaryPath()).parent_path().string() + "/../guest";
  ASSERT_TRUE(std::filesystem::exists(guest + "/vmlinux"))
      << "no guest image in " << guest << " (deploy/guest/build.sh build)";
  // A copy of the image of the test's own, so that the test can change it.
  std::filesystem::copy_file(guest + "/vmlinux", dir_.Join("vmlinux"));
  std::filesystem::copy_file(guest + "/initrd.img", dir_.Join("initrd.img"));
  auto start = [&](int round) {
    DaemonProcess::Options o = Options();
    std::ofstream(o.config_path) << "hypervisor:\n  accel: auto\n  kernel: " << dir_.Join("vmlinux")
                                 << "\n  initrd: " << dir_.Join("initrd.img") << "\n";
    o.log_path = dir_.Join("podvisord-" + std::to_string(round) + ".log");
    auto daemon = StartDaemon(o);
    CriClient cri(daemon->endpoint());
    EXPECT_TRUE(WaitRuntimeReady(cri, 180)) << daemon->ReadLog();
    std::string log = daemon->ReadLog();
    EXPECT_EQ(daemon->Stop(), 0);
    return log;
  };
  std::string first = start(1);
  EXPECT_THAT(first, HasSubstr("KVM probe: guest"));
  EXPECT_THAT(first, ::testing::Not(HasSubstr("cached result")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Join("a-root/hypervisor/kvm-probe")));

  std::string warm = start(2);
  EXPECT_THAT(warm, HasSubstr("KVM probe: cached result"));
  EXPECT_THAT(warm, ::testing::Not(HasSubstr("KVM probe: guest")));

  // The guest image changes (rebuilt in place): the cached outcome no longer holds.
  std::filesystem::last_write_time(dir_.Join("initrd.img"),
                                   std::filesystem::file_time_type::clock::now());
  std::string changed = start(3);
  EXPECT_THAT(changed, HasSubstr("KVM probe: guest"));
  EXPECT_THAT(changed, ::testing::Not(HasSubstr("cached result")));
}

// A stop while the KVM probe guest boots ends the probe: the daemon does not wait it out, its
// QEMU goes, and the unfinished probe is not cached as an outcome.
TEST_F(DaemonE2eTest, AStopDuringTheKvmProbeEndsIt) {
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "no usable /dev/kvm: auto never probes";
  const std::string guest =
      std::filesystem::path(DaemonProcess::BinaryPath()).parent_path().string() + "/../guest";
  ASSERT_TRUE(std::filesystem::exists(guest + "/vmlinux"))
      << "no guest image in " << guest << " (deploy/guest/build.sh build)";
  DaemonProcess::Options o = Options();
  std::ofstream(o.config_path) << "hypervisor:\n  accel: auto\n  kernel: " << guest
                               << "/vmlinux\n  initrd: " << guest << "/initrd.img\n";
  auto daemon = StartDaemon(o);
  bool probing = false;
  for (int i = 0; i < 1200 && !probing; ++i) {
    probing = daemon->ReadLog().find("probe guest started") != std::string::npos;
    if (!probing) usleep(50 * 1000);
  }
  ASSERT_TRUE(probing) << daemon->ReadLog();
  EXPECT_EQ(daemon->Stop(), 0);
  const std::string log = daemon->ReadLog();
  EXPECT_THAT(log, ::testing::Not(HasSubstr("KVM probe: guest"))) << log;
  EXPECT_THAT(log, HasSubstr("start-up cancelled")) << log;
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("a-root/hypervisor/kvm-probe")));
  EXPECT_THAT(QemuProcessesUnder(o.state_dir), ::testing::IsEmpty())
      << "a probe QEMU outlived the daemon";
}

TEST_F(DaemonE2eTest, SocketIsGroupOnlyAndRemovedOnSigterm) {
  auto o = Options();
  auto daemon = StartDaemon(o);
  struct stat st {};
  ASSERT_EQ(::stat(o.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(daemon->Stop(), 0) << daemon->ReadLog();
  EXPECT_FALSE(std::filesystem::exists(o.socket_path));
}

TEST_F(DaemonE2eTest, PodCidrSurvivesRestart) {
  auto o = Options();
  {
    auto daemon = StartDaemon(o);
    CriClient cri(daemon->endpoint());
    v1::UpdateRuntimeConfigRequest req;
    req.mutable_runtime_config()->mutable_network_config()->set_pod_cidr("10.244.1.0/24");
    v1::UpdateRuntimeConfigResponse resp;
    ASSERT_TRUE(cri.runtime().UpdateRuntimeConfig(CriClient::Context().get(), req, &resp).ok());
    daemon->Kill();  // no graceful shutdown: the write must already be durable
  }
  auto daemon = StartDaemon(o);
  CriClient cri(daemon->endpoint());
  v1::StatusRequest req;
  req.set_verbose(true);
  v1::StatusResponse status;
  ASSERT_TRUE(cri.runtime().Status(CriClient::Context().get(), req, &status).ok());
  ASSERT_TRUE(status.info().contains("network"));
  EXPECT_THAT(status.info().at("network"), HasSubstr("10.244.1.0/24"));
}

TEST_F(DaemonE2eTest, UnimplementedRpcsSayWhich) {
  auto daemon = StartDaemon(Options());
  CriClient cri(daemon->endpoint());
  v1::CheckpointContainerResponse resp;
  grpc::Status s =
      cri.runtime().CheckpointContainer(CriClient::Context().get(), {}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("CheckpointContainer"));
}

// Sends raw bytes as the request message of `method`.
grpc::Status CallRaw(CriClient& cri, const std::string& method, const std::string& bytes) {
  grpc::GenericStub stub(cri.channel());
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::Status result;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  auto ctx = CriClient::Context(10);
  stub.UnaryCall(ctx.get(), method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   result = s;
                   done = true;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  return result;
}

TEST_F(DaemonE2eTest, MalformedRequestsGetErrorsAndHarmNothing) {
  auto daemon = StartDaemon(Options());
  CriClient cri(daemon->endpoint());
  const std::vector<std::string> garbage = {
      std::string("\xff\xff\xff\xff\x0f", 5),        // truncated varint tag
      std::string("\x0a\xff\xff\xff\x7f", 5),        // length far beyond the message
      std::string("\x12\x03\x0a\x01", 4),            // nested message cut short
      std::string(100000, '\x07'),                   // a long run of invalid wire types
  };
  for (const char* method : {"/runtime.v1.RuntimeService/ListPodSandbox",
                             "/runtime.v1.RuntimeService/Version",
                             "/runtime.v1.RuntimeService/RunPodSandbox",
                             "/runtime.v1.ImageService/PullImage"}) {
    for (const std::string& bytes : garbage) {
      grpc::Status s = CallRaw(cri, method, bytes);
      EXPECT_FALSE(s.ok()) << method;
    }
  }
  grpc::Status unknown = CallRaw(cri, "/runtime.v1.RuntimeService/NoSuchMethod", "");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  // The daemon is still alive and answering.
  v1::VersionResponse version;
  EXPECT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
  EXPECT_TRUE(daemon->Running());
}

// Leaves a socket file behind with nothing listening, as a crashed daemon would.
void MakeStaleSocket(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
}

TEST_F(DaemonE2eTest, StaleSocketIsReplaced) {
  auto o = Options();
  MakeStaleSocket(o.socket_path);
  ASSERT_TRUE(std::filesystem::exists(o.socket_path));
  ASSERT_FALSE(CanConnect(o.socket_path));
  auto daemon = StartDaemon(o);
  CriClient cri(daemon->endpoint());
  v1::VersionResponse version;
  EXPECT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
}

TEST_F(DaemonE2eTest, KilledDaemonRestartsOnItsOwnStaleSocket) {
  auto o = Options();
  auto daemon = StartDaemon(o);
  daemon->Kill();
  ASSERT_TRUE(std::filesystem::exists(o.socket_path));
  auto again = StartDaemon(o);
  EXPECT_TRUE(again->Running());
}

TEST_F(DaemonE2eTest, SecondDaemonOnSameRootRefuses) {
  auto first = StartDaemon(Options());
  auto o = Options();
  o.socket_path = dir_.Join("other-run/podvisor.sock");
  o.log_path = dir_.Join("second.log");
  DaemonProcess second(o);
  std::string error;
  EXPECT_FALSE(second.Start(&error, 10000));
  EXPECT_EQ(second.exit_code(), 1);
  EXPECT_THAT(second.ReadLog(), HasSubstr("another podvisord"));
  EXPECT_THAT(second.ReadLog(), HasSubstr(o.root_dir));
  // The first one is unharmed.
  CriClient cri(first->endpoint());
  v1::VersionResponse version;
  EXPECT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
}

TEST_F(DaemonE2eTest, LiveSocketOfAnotherServerIsNotStolen) {
  auto first = StartDaemon(Options("a"));
  auto o = Options("b");
  o.socket_path = Options("a").socket_path;
  o.log_path = dir_.Join("b.log");
  DaemonProcess second(o);
  std::string error;
  // The socket answers (the first daemon holds it), so wait for the second one to give up.
  if (second.Start(&error, 10000)) second.WaitExit(10000);
  EXPECT_EQ(second.exit_code(), 1) << second.ReadLog();
  EXPECT_THAT(second.ReadLog(), HasSubstr("another server is listening"));
  CriClient cri(first->endpoint());
  v1::VersionResponse version;
  EXPECT_TRUE(cri.runtime().Version(CriClient::Context().get(), {}, &version).ok());
}

TEST_F(DaemonE2eTest, BadConfigStopsStartNamingTheKey) {
  auto o = Options();
  o.config_path = dir_.Join("bad.yaml");
  o.log_path = dir_.Join("bad.log");
  std::ofstream(o.config_path) << "hypervisor:\n  accel: warp\n";
  DaemonProcess daemon(o);
  std::string error;
  EXPECT_FALSE(daemon.Start(&error, 10000));
  EXPECT_EQ(daemon.exit_code(), 2);
  EXPECT_THAT(daemon.ReadLog(), HasSubstr("hypervisor.accel"));
  EXPECT_THAT(daemon.ReadLog(), HasSubstr("bad.yaml"));
}

TEST_F(DaemonE2eTest, NamedConfigFileMustExist) {
  auto o = Options();
  o.config_path = dir_.Join("missing.yaml");
  o.log_path = dir_.Join("missing.log");
  DaemonProcess daemon(o);
  std::string error;
  EXPECT_FALSE(daemon.Start(&error, 10000));
  EXPECT_THAT(daemon.ReadLog(), HasSubstr("missing.yaml"));
}

int RunBinary(const std::string& args, std::string* output) {
  std::string cmd = DaemonProcess::BinaryPath() + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  int status = ::pclose(p);
  return WEXITSTATUS(status);
}

TEST(DaemonCliTest, HelpVersionAndBadFlags) {
  std::string out;
  EXPECT_EQ(RunBinary("--help", &out), 0);
  EXPECT_THAT(out, HasSubstr("--listen"));
  out.clear();
  EXPECT_EQ(RunBinary("--version", &out), 0);
  EXPECT_THAT(out, HasSubstr("podvisord "));
  out.clear();
  EXPECT_EQ(RunBinary("--frobnicate", &out), 2);
  EXPECT_THAT(out, HasSubstr("--frobnicate"));
  out.clear();
  EXPECT_EQ(RunBinary("--log-level", &out), 2);
  EXPECT_THAT(out, HasSubstr("needs a value"));
  out.clear();
  EXPECT_EQ(RunBinary("--config /dev/null --log-level shouty", &out), 2);
  EXPECT_THAT(out, HasSubstr("log_level"));
}

}  // namespace
}  // namespace podvisor::testing
