// Containers inside real pod VMs: the real podvisord pulls a busybox image from a docker-registry
// on loopback (through a registry mirror), boots a QEMU guest (TCG), and runs containers in it
// with crun through the guest agent; logs, exit codes, stop, exec and stats are checked as a CRI
// client sees them.

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/support/daemon_process.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
namespace v1 = runtime::v1;
namespace fs = std::filesystem;

constexpr char kImage[] = "docker.io/library/busybox:1.36";
constexpr char kLayered[] = "docker.io/library/layered:1";

std::string GuestDir() { return std::string(PODVISOR_BIN_DIR) + "/../guest"; }

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class ContainerVmTest : public ::testing::Test {
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
    for (const char* applet : {"sh", "echo", "sleep", "true", "false", "cat", "touch", "env"}) {
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
    // Three layers: busybox, then a file, then that file replaced and another one deleted.
    OciLayout layered(dir_.Join("layered"));
    nlohmann::json ldesc = layered.AddImage(
        {OciLayout::MakeLayer(entries, Compression::kGzip),
         OciLayout::MakeLayer({Dir("data"), File("data/msg", "lower\n"), File("data/gone", "x")},
                              Compression::kGzip),
         OciLayout::MakeLayer({Dir("data"), File("data/msg", "upper\n"), File("data/.wh.gone", "")},
                              Compression::kZstd)},
        "amd64", "");
    layered.Tag("1", ldesc);
    ASSERT_EQ(Push(layered, "1", registry_->host() + "/library/layered:1"), "");

    const int n = getpid() % 200 + 20;
    bridge_ = absl::StrCat("pvctr", getpid() % 100000);
    fs::create_directories(dir_.Join("cni"));
    std::ofstream(dir_.Join("cni/10-test.conflist"))
        << absl::StrCat(R"({
  "cniVersion": "1.0.0", "name": "pvctr-test",
  "plugins": [
    {"type": "bridge", "bridge": ")",
                        bridge_, R"(", "isGateway": true,
     "ipam": {"type": "host-local", "dataDir": ")",
                        dir_.Join("ipam"), R"(",
              "ranges": [[{"subnet": "10.216.)",
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

    for (const char* image : {kImage, kLayered}) {
      v1::PullImageRequest pull;
      pull.mutable_image()->set_image(image);
      v1::PullImageResponse pulled;
      grpc::Status s = cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
    grpc::Status s;

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
    if (id.empty()) return id;
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

  TempDir dir_;
  std::string bridge_;
  std::unique_ptr<LocalRegistry> registry_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
  v1::PodSandboxConfig pod_config_;
  std::string pod_;
};

constexpr char kTime[] = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z";

TEST_F(ContainerVmTest, RunsContainersLogsExitsExecAndStop) {
  // echo hello: the log file in the CRI format, byte for byte but the time.
  std::string hello = Run(Config("hello", {"echo", "hello"}));
  ASSERT_FALSE(hello.empty());
  v1::ContainerStatus st = WaitExited(hello);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  EXPECT_GT(st.started_at(), 0);
  EXPECT_GE(st.finished_at(), st.started_at());
  EXPECT_EQ(st.log_path(), dir_.Join("logs/hello.log"));
  EXPECT_EQ(st.image().image(), kImage);
  std::string log = ReadAll(dir_.Join("logs/hello.log"));
  EXPECT_THAT(log, MatchesRegex(absl::StrCat(kTime, " stdout F hello\n"))) << log;

  // A failure, with stderr, and CRI env + args over the image's.
  v1::ContainerConfig fail = Config("fail", {"sh", "-c"});
  fail.add_args("echo \"$GREETING\" >&2; exit 1");
  v1::KeyValue* env = fail.add_envs();
  env->set_key("GREETING");
  env->set_value("from cri");
  std::string failed = Run(fail);
  st = WaitExited(failed);
  EXPECT_EQ(st.exit_code(), 1);
  EXPECT_EQ(st.reason(), "Error");
  log = ReadAll(dir_.Join("logs/fail.log"));
  EXPECT_THAT(log, MatchesRegex(absl::StrCat(kTime, " stderr F from cri\n"))) << log;

  // A long-running container with a read-only root filesystem, next to the others.
  v1::ContainerConfig sleeper = Config("sleeper", {"sleep", "1000"});
  sleeper.mutable_linux()->mutable_security_context()->set_readonly_rootfs(true);
  std::string sleeping = Run(sleeper);
  EXPECT_EQ(Status(sleeping).state(), v1::CONTAINER_RUNNING);

  v1::ExecSyncResponse out;
  grpc::Status s = Exec(sleeping, {"echo", "hi"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "hi\n");
  EXPECT_EQ(out.exit_code(), 0);
  out.Clear();
  s = Exec(sleeping, {"sh", "-c", "echo err >&2; exit 3"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stderr(), "err\n");
  EXPECT_EQ(out.exit_code(), 3);
  out.Clear();
  s = Exec(sleeping, {"touch", "/x"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(out.exit_code(), 0);
  EXPECT_THAT(out.stderr(), HasSubstr("Read-only file system"));
  out.Clear();
  s = Exec(sleeping, {"sleep", "100"}, 2, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();

  v1::ContainerStatsRequest stats_req;
  stats_req.set_container_id(sleeping);
  v1::ContainerStatsResponse stats;
  s = cri_->runtime().ContainerStats(CriClient::Context().get(), stats_req, &stats);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(stats.stats().memory().working_set_bytes().value(), 0u);
  EXPECT_GT(stats.stats().cpu().usage_core_nano_seconds().value(), 0u);

  v1::ListContainersResponse list;
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 3);

  // sleep as PID 1 of its container ignores SIGTERM: killed after the grace period.
  ASSERT_TRUE(Stop(sleeping, 2).ok());
  st = Status(sleeping);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 137);

  // A process that handles SIGTERM exits on its own within the grace period.
  std::string graceful =
      Run(Config("graceful", {"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"}));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_TRUE(Stop(graceful, 30).ok());
  st = Status(graceful);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0);

  // Stop without grace.
  std::string killed = Run(Config("killed", {"sleep", "1000"}));
  ASSERT_TRUE(Stop(killed, 0).ok());
  EXPECT_EQ(Status(killed).exit_code(), 137);

  for (const std::string& id : {hello, failed, sleeping, graceful, killed}) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    v1::RemoveContainerResponse resp;
    s = cri_->runtime().RemoveContainer(CriClient::Context(60).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  list.Clear();
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 0);
}

TEST_F(ContainerVmTest, RootfsIsTheOverlayOfAllLayersWithAWritableUpper) {
  v1::ContainerConfig c = Config("layered", {"sleep", "1000"});
  c.mutable_image()->set_image(kLayered);
  std::string layered = Run(c);
  ASSERT_FALSE(layered.empty());
  // A container of the one-layer image shares the busybox layer disk; read-only host volumes
  // (a directory and a file) reach it as snapshots.
  ASSERT_EQ(::system(("mkdir -p " + dir_.Join("vol") + " && echo from-host > " +
                      dir_.Join("vol/cfg") + " && echo tok > " + dir_.Join("token"))
                         .c_str()),
            0);
  v1::ContainerConfig pc = Config("plain", {"sleep", "1000"});
  v1::Mount* m = pc.add_mounts();
  m->set_container_path("/config");
  m->set_host_path(dir_.Join("vol"));
  m->set_readonly(true);
  m = pc.add_mounts();
  m->set_container_path("/tmp/token");
  m->set_host_path(dir_.Join("token"));
  m->set_readonly(true);
  std::string plain = Run(pc);
  ASSERT_FALSE(plain.empty());
  {
    v1::ExecSyncResponse vol;
    grpc::Status vs = Exec(plain, {"sh", "-c", "cat /config/cfg /tmp/token"}, 60, &vol);
    ASSERT_TRUE(vs.ok()) << vs.error_message();
    EXPECT_EQ(vol.stdout(), "from-host\ntok\n") << vol.stderr();
  }
  v1::ExecSyncResponse out;
  grpc::Status s = Exec(layered, {"sh", "-c", "cat /data/msg; ls /data"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "upper\nmsg\n") << out.stderr();
  out.Clear();
  s = Exec(layered, {"sh", "-c", "echo new > /data/msg && cat /data/msg"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "new\n") << out.stderr();
  out.Clear();
  s = Exec(plain, {"sh", "-c", "ls /data 2>&1; echo rc=$?"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(out.stdout(), HasSubstr("No such file"));
  for (const std::string& id : {layered, plain}) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    v1::RemoveContainerResponse resp;
    s = cri_->runtime().RemoveContainer(CriClient::Context(60).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  // With the disks unplugged a new container of the image attaches them again.
  std::string again = Run(c);
  ASSERT_FALSE(again.empty());
  out.Clear();
  s = Exec(again, {"cat", "/data/msg"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "upper\n");
}

TEST_F(ContainerVmTest, RemovingThePodRemovesItsContainers) {
  std::string id = Run(Config("sleeper", {"sleep", "1000"}));
  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod_);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped).ok());
  EXPECT_EQ(Status(id).state(), v1::CONTAINER_EXITED);
  v1::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod_);
  v1::RemovePodSandboxResponse removed;
  ASSERT_TRUE(cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), rm, &removed).ok());
  pod_.clear();
  v1::ListContainersResponse list;
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 0);
}

}  // namespace
}  // namespace podvisor::testing
