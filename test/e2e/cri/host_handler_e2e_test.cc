// The host runtime handler through the real podvisord and the project's CRI client: routing of
// RunPodSandbox to a handler, a host-network pod whose containers run on the node under crun,
// their logs, exec, stop and removal, a kill -9 of the daemon with host containers running, and a
// privileged pod whose Bidirectional mount reaches the host. No VM is booted: the daemon is given
// no guest kernel, so only the host handler can run pods.

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

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

namespace v1 = runtime::v1;
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr char kImage[] = "docker.io/library/busybox:1.36";
constexpr char kTime[] = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z";

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class HostHandlerE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string busybox = ReadAll("/bin/busybox");
    ASSERT_FALSE(busybox.empty()) << "busybox-static is not installed";
    std::vector<TarEntry> entries = {Dir("bin"),
                                     File("bin/busybox", busybox, 0755),
                                     Dir("tmp"),
                                     Dir("etc"),
                                     Dir("mnt"),
                                     Dir("proc"),
                                     Dir("sys"),
                                     Dir("dev"),
                                     File("etc/passwd", "root:x:0:0::/:/bin/sh\n")};
    for (const char* applet : {"sh", "echo", "sleep", "cat", "hostname", "mount", "mkdir", "ls",
                               "true", "id", "ip", "test", "stty", "seq"}) {
      entries.push_back(Symlink(absl::StrCat("bin/", applet), "busybox"));
    }
    std::string error;
    registry_ = std::make_unique<LocalRegistry>(dir_.Join("registry"), LocalRegistry::Options{});
    ASSERT_TRUE(registry_->Start(&error)) << error;
    OciLayout layout(dir_.Join("layout"));
    layout.Tag("1.36", layout.AddImage({OciLayout::MakeLayer(entries, Compression::kGzip)}));
    ASSERT_EQ(Push(layout, "1.36", registry_->host() + "/library/busybox:1.36"), "");

    bridge_ = absl::StrCat("pvhh", getpid() % 100000);
    fs::create_directories(dir_.Join("cni"));
    std::ofstream(dir_.Join("cni/10-test.conflist")) << absl::StrCat(
        R"({"cniVersion": "1.0.0", "name": "pvhh-test", "plugins": [
  {"type": "bridge", "bridge": ")",
        bridge_, R"(", "isGateway": true,
   "ipam": {"type": "host-local", "dataDir": ")",
        dir_.Join("ipam"), R"(",
            "ranges": [[{"subnet": "10.217.)",
        getpid() % 200 + 20, R"(.0/24"}]]}},
  {"type": "loopback"}]})");
    std::ofstream(dir_.Join("config.yaml"))
        << "hypervisor:\n  accel: tcg\n  kernel: " << dir_.Join("no-kernel")
        << "\n  initrd: " << dir_.Join("no-initrd") << "\n  shared_filesystem: false\n"
        << "cni:\n  conf_dir: " << dir_.Join("cni") << "\n"
        << "registry:\n  hosts:\n    docker.io:\n      mirrors: [\"http://" << registry_->host()
        << "\"]\n";
    options_.root_dir = dir_.Join("root");
    options_.state_dir = dir_.Join("st");
    options_.socket_path = dir_.Join("pv.sock");
    options_.config_path = dir_.Join("config.yaml");
    options_.log_path = dir_.Join("podvisord.log");
    StartDaemon();
    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(kImage);
    v1::PullImageResponse pulled;
    grpc::Status s = cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  void TearDown() override {
    if (cri_) {
      v1::ListPodSandboxResponse pods;
      (void)cri_->runtime().ListPodSandbox(CriClient::Context().get(), {}, &pods);
      for (const auto& p : pods.items()) EXPECT_TRUE(RemovePod(p.id()).ok());
    }
    daemon_.reset();
    (void)::system(absl::StrCat("ip link del ", bridge_, " 2>/dev/null").c_str());
  }

  void StartDaemon() {
    daemon_ = std::make_unique<DaemonProcess>(options_);
    std::string error;
    ASSERT_TRUE(daemon_->Start(&error)) << error;
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
  }

  v1::PodSandboxConfig Pod(const std::string& name, bool host_network) {
    v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("kube-system");
    c.mutable_metadata()->set_uid("uid-" + name);
    c.set_log_directory(dir_.Join("logs/" + name));
    if (host_network) {
      c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
          v1::NODE);
    }
    return c;
  }

  grpc::Status RunPod(const v1::PodSandboxConfig& config, const std::string& handler,
                      std::string* id) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    req.set_runtime_handler(handler);
    v1::RunPodSandboxResponse resp;
    grpc::Status s = cri_->runtime().RunPodSandbox(CriClient::Context(120).get(), req, &resp);
    *id = resp.pod_sandbox_id();
    return s;
  }

  grpc::Status RemovePod(const std::string& id) {
    v1::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::RemovePodSandboxResponse resp;
    return cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), req, &resp);
  }

  v1::ContainerConfig Container(const std::string& name, std::vector<std::string> command) {
    v1::ContainerConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_image()->set_image(kImage);
    for (const std::string& a : command) c.add_command(a);
    c.set_log_path(name + ".log");
    c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(
        v1::CONTAINER);
    return c;
  }

  std::string RunContainer(const std::string& pod, const v1::PodSandboxConfig& pod_config,
                           const v1::ContainerConfig& config) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    *req.mutable_config() = config;
    *req.mutable_sandbox_config() = pod_config;
    v1::CreateContainerResponse resp;
    grpc::Status s = cri_->runtime().CreateContainer(CriClient::Context(120).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
    if (!s.ok()) return "";
    v1::StartContainerRequest start;
    start.set_container_id(resp.container_id());
    v1::StartContainerResponse started;
    s = cri_->runtime().StartContainer(CriClient::Context(60).get(), start, &started);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.container_id();
  }

  v1::ContainerStatus Status(const std::string& id) {
    v1::ContainerStatusRequest req;
    req.set_container_id(id);
    v1::ContainerStatusResponse resp;
    grpc::Status s = cri_->runtime().ContainerStatus(CriClient::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.status();
  }

  v1::ContainerStatus WaitExited(const std::string& id) {
    v1::ContainerStatus st;
    for (int i = 0; i < 300; ++i) {
      st = Status(id);
      if (st.state() == v1::CONTAINER_EXITED) return st;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "container " << id << " did not exit";
    return st;
  }

  // Waits until the file holds `text`.
  bool WaitFor(const std::string& path, const std::string& text, int seconds = 30) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (ReadAll(path).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  grpc::Status Exec(const std::string& id, std::vector<std::string> cmd, v1::ExecSyncResponse* resp,
                    int timeout = 30) {
    v1::ExecSyncRequest req;
    req.set_container_id(id);
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_timeout(timeout);
    return cri_->runtime().ExecSync(CriClient::Context(60).get(), req, resp);
  }

  TempDir dir_;
  std::string bridge_;
  std::unique_ptr<LocalRegistry> registry_;
  DaemonProcess::Options options_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
};

TEST_F(HostHandlerE2eTest, StatusListsTheHandlers) {
  v1::StatusResponse status;
  ASSERT_TRUE(cri_->runtime().Status(CriClient::Context().get(), {}, &status).ok());
  std::vector<std::string> names;
  for (const auto& h : status.runtime_handlers()) names.push_back(h.name());
  EXPECT_THAT(names, ::testing::ElementsAre("", "vm", "host"));
  EXPECT_TRUE(status.features().supplemental_groups_policy());
  // What kubelet reads to allow hostUsers: false pods on a handler: VM pods only.
  ASSERT_EQ(status.runtime_handlers_size(), 3);
  EXPECT_TRUE(status.runtime_handlers(0).features().user_namespaces());
  EXPECT_TRUE(status.runtime_handlers(1).features().user_namespaces());
  EXPECT_FALSE(status.runtime_handlers(2).features().user_namespaces());
  EXPECT_TRUE(status.runtime_handlers(2).features().recursive_read_only_mounts());
}

// SupplementalGroupsPolicy on the node: the host handler resolves the user against the image's
// files itself. Merge gives the image's group 50000 to the init process and execs, Strict does
// not; ContainerStatus.user says so, also after a daemon restart (from the record).
TEST_F(HostHandlerE2eTest, SupplementalGroupsPolicyMergeAndStrict) {
  std::vector<TarEntry> entries = {
      Dir("bin"),
      File("bin/busybox", ReadAll("/bin/busybox"), 0755),
      Dir("tmp"),
      Dir("etc"),
      Dir("proc"),
      Dir("sys"),
      Dir("dev"),
      File("etc/passwd", "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n"),
      File("etc/group", "root:x:0:\napp:x:1000:\nimagegroup:x:50000:app\n")};
  for (const char* applet : {"sh", "sleep", "id", "grep"}) {
    entries.push_back(Symlink(absl::StrCat("bin/", applet), "busybox"));
  }
  OciLayout layout(dir_.Join("groups-layout"));
  layout.Tag("1", layout.AddImage({OciLayout::MakeLayer(entries, Compression::kGzip)}));
  ASSERT_EQ(Push(layout, "1", registry_->host() + "/library/groups:1"), "");
  v1::PullImageRequest pull;
  pull.mutable_image()->set_image("docker.io/library/groups:1");
  v1::PullImageResponse pulled;
  ASSERT_TRUE(cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled).ok());

  v1::PodSandboxConfig pod_config = Pod("groups", true);
  std::string pod;
  ASSERT_TRUE(RunPod(pod_config, "host", &pod).ok());
  std::map<std::string, std::vector<int64_t>> expected;
  for (v1::SupplementalGroupsPolicy policy : {v1::Merge, v1::Strict}) {
    const bool strict = policy == v1::Strict;
    v1::ContainerConfig config = Container(strict ? "strict" : "merge", {"sleep", "1000"});
    config.mutable_image()->set_image("docker.io/library/groups:1");
    v1::LinuxContainerSecurityContext* sc = config.mutable_linux()->mutable_security_context();
    sc->mutable_run_as_user()->set_value(1000);
    sc->mutable_run_as_group()->set_value(3000);
    sc->add_supplemental_groups(4000);
    sc->set_supplemental_groups_policy(policy);
    const std::string id = RunContainer(pod, pod_config, config);
    ASSERT_FALSE(id.empty());
    expected[id] =
        strict ? std::vector<int64_t>{3000, 4000} : std::vector<int64_t>{3000, 4000, 50000};
    v1::ExecSyncResponse out;
    ASSERT_TRUE(Exec(id, {"id", "-G"}, &out).ok());
    EXPECT_EQ(out.stdout(), strict ? "3000 4000\n" : "3000 4000 50000\n");
    out.Clear();
    ASSERT_TRUE(Exec(id, {"grep", "Groups:", "/proc/1/status"}, &out).ok());
    EXPECT_EQ(out.stdout(), strict ? "Groups:\t3000 4000 \n" : "Groups:\t3000 4000 50000 \n");
  }
  daemon_->Kill();
  cri_.reset();
  StartDaemon();
  for (const auto& [id, groups] : expected) {
    v1::ContainerStatus st = Status(id);
    ASSERT_TRUE(st.has_user()) << id;
    EXPECT_EQ(st.user().linux().uid(), 1000);
    EXPECT_EQ(st.user().linux().gid(), 3000);
    EXPECT_THAT(st.user().linux().supplemental_groups(), ::testing::ElementsAreArray(groups));
  }
}

TEST_F(HostHandlerE2eTest, RoutesPodsThatNeedTheHost) {
  std::string id;
  grpc::Status s = RunPod(Pod("vmhost", true), "vm", &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("namespace_options.network=NODE"));
  s = RunPod(Pod("kata", false), "kata-fc", &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("\"kata-fc\""));

  // The default handler sends a host-network pod to the host (no VM could run here at all).
  s = RunPod(Pod("proxy", true), "", &id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  v1::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(id);
  req.set_verbose(true);
  v1::PodSandboxStatusResponse resp;
  ASSERT_TRUE(cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp).ok());
  EXPECT_EQ(resp.status().state(), v1::SANDBOX_READY);
  EXPECT_EQ(resp.status().runtime_handler(), "");
  EXPECT_EQ(resp.status().linux().namespaces().options().network(), v1::NODE);
  EXPECT_EQ(nlohmann::json::parse(resp.info().at("info"))["handler"], "host");

  // The host handler also takes ordinary pods, on a CNI network of their own.
  std::string cni_pod;
  s = RunPod(Pod("cni", false), "host", &cni_pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  req.set_pod_sandbox_id(cni_pod);
  resp.Clear();
  ASSERT_TRUE(cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp).ok());
  EXPECT_THAT(resp.status().network().ip(), MatchesRegex("10\\.217\\.[0-9]+\\.[0-9]+"));
  v1::ListPodSandboxResponse pods;
  ASSERT_TRUE(cri_->runtime().ListPodSandbox(CriClient::Context().get(), {}, &pods).ok());
  EXPECT_EQ(pods.items_size(), 2);
}

TEST_F(HostHandlerE2eTest, HostNetworkPodRunsContainersOnTheNode) {
  v1::PodSandboxConfig pod_config = Pod("proxy", true);
  std::string pod;
  ASSERT_TRUE(RunPod(pod_config, "", &pod).ok());
  std::string hello =
      RunContainer(pod, pod_config, Container("hello", {"sh", "-c", "echo hello; hostname"}));
  ASSERT_FALSE(hello.empty());
  v1::ContainerStatus st = WaitExited(hello);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  EXPECT_GE(st.finished_at(), st.started_at());
  char node[256] = {};
  ::gethostname(node, sizeof node - 1);
  const std::string log_path = dir_.Join("logs/proxy/hello.log");
  EXPECT_EQ(st.log_path(), log_path);
  EXPECT_THAT(ReadAll(log_path), MatchesRegex(absl::StrCat(kTime, " stdout F hello\n", kTime,
                                                           " stdout F ", node, "\n")));

  std::string sleeper = RunContainer(pod, pod_config, Container("sleeper", {"sleep", "1000"}));
  EXPECT_EQ(Status(sleeper).state(), v1::CONTAINER_RUNNING);
  v1::ExecSyncResponse out;
  grpc::Status s = Exec(sleeper, {"sh", "-c", "echo hi; echo err >&2; exit 3"}, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "hi\n");
  EXPECT_EQ(out.stderr(), "err\n");
  EXPECT_EQ(out.exit_code(), 3);
  // The node's network: the test's own bridge is visible from inside.
  out.Clear();
  ASSERT_TRUE(Exec(sleeper, {"ip", "link"}, &out).ok());
  EXPECT_THAT(out.stdout(), HasSubstr("lo"));
  out.Clear();
  s = Exec(sleeper, {"sleep", "100"}, &out, 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  // The timed-out process is gone at once, not even a zombie: the container's own sleep is the
  // only one left.
  out.Clear();
  ASSERT_TRUE(Exec(sleeper, {"sh", "-c", "cat /proc/[0-9]*/stat"}, &out).ok());
  size_t sleeps = 0;
  for (size_t at = 0; (at = out.stdout().find("(sleep)", at)) != std::string::npos; ++at) ++sleeps;
  EXPECT_EQ(sleeps, 1u) << out.stdout() << out.stderr();

  v1::ContainerStatsRequest stats_req;
  stats_req.set_container_id(sleeper);
  v1::ContainerStatsResponse stats;
  ASSERT_TRUE(cri_->runtime().ContainerStats(CriClient::Context().get(), stats_req, &stats).ok());
  EXPECT_GT(stats.stats().memory().working_set_bytes().value(), 0u);

  // sleep as PID 1 of its namespace ignores SIGTERM: killed after the grace period.
  v1::StopContainerRequest stop;
  stop.set_container_id(sleeper);
  stop.set_timeout(1);
  v1::StopContainerResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopContainer(CriClient::Context(60).get(), stop, &stopped).ok());
  st = Status(sleeper);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 137);

  v1::ListContainersResponse list;
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 2);
  for (const std::string& id : {hello, sleeper}) {
    v1::RemoveContainerRequest rm;
    rm.set_container_id(id);
    v1::RemoveContainerResponse removed;
    EXPECT_TRUE(cri_->runtime().RemoveContainer(CriClient::Context(60).get(), rm, &removed).ok());
  }
  list.Clear();
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 0);
  ASSERT_TRUE(RemovePod(pod).ok());
  EXPECT_FALSE(fs::exists(dir_.Join("root/host/containers/" + sleeper)));
  const std::string mounts = ReadAll("/proc/self/mountinfo");
  EXPECT_EQ(mounts.find(dir_.Join("root/host")), std::string::npos) << "no mount left behind";
  EXPECT_EQ(mounts.find(dir_.Join("st/host/pods")), std::string::npos) << "no mount left behind";
}

TEST_F(HostHandlerE2eTest, HostContainersOutliveAKilledDaemon) {
  v1::PodSandboxConfig pod_config = Pod("ds", true);
  std::string pod;
  ASSERT_TRUE(RunPod(pod_config, "", &pod).ok());
  std::string ticker =
      RunContainer(pod, pod_config,
                   Container("ticker", {"sh", "-c",
                                        "i=0; while true; do echo tick $i; i=$((i+1)); "
                                        "sleep 0.2; done"}));
  std::string quitter =
      RunContainer(pod, pod_config, Container("quitter", {"sh", "-c", "sleep 2; exit 7"}));
  const std::string log = dir_.Join("logs/ds/ticker.log");
  ASSERT_TRUE(WaitFor(log, "tick 2"));
  daemon_->Kill();
  cri_.reset();
  // No daemon: the monitor keeps writing the log, and sees the other container exit.
  ASSERT_TRUE(WaitFor(log, "tick 15")) << ReadAll(log);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  StartDaemon();
  v1::ContainerStatus st = Status(ticker);
  EXPECT_EQ(st.state(), v1::CONTAINER_RUNNING);
  st = Status(quitter);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 7);
  EXPECT_EQ(st.reason(), "Error");
  ASSERT_TRUE(WaitFor(log, "tick 25")) << "logs continue";
  // Every line once, in order: nothing lost or written twice across the kill.
  std::stringstream lines(ReadAll(log));
  std::string line;
  int expect = 0;
  while (std::getline(lines, line)) {
    EXPECT_THAT(line, MatchesRegex(absl::StrCat(kTime, " stdout F tick ", expect)));
    ++expect;
  }
  v1::ExecSyncResponse out;
  ASSERT_TRUE(Exec(ticker, {"echo", "still here"}, &out).ok());
  EXPECT_EQ(out.stdout(), "still here\n");
  v1::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(pod);
  v1::PodSandboxStatusResponse resp;
  ASSERT_TRUE(cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp).ok());
  EXPECT_EQ(resp.status().state(), v1::SANDBOX_READY);
}

TEST_F(HostHandlerE2eTest, PrivilegedPodsBidirectionalMountReachesTheHost) {
  // A shared mount on the host, as kubelet's /var/lib/kubelet is for CSI plugins.
  const std::string shared = dir_.Join("shared");
  fs::create_directories(shared);
  ASSERT_EQ(::mount(shared.c_str(), shared.c_str(), nullptr, MS_BIND, nullptr), 0);
  ASSERT_EQ(::mount(nullptr, shared.c_str(), nullptr, MS_SHARED, nullptr), 0);
  struct Unmount {
    std::string path;
    ~Unmount() {
      ::umount2((path + "/sub").c_str(), MNT_DETACH);
      ::umount2(path.c_str(), MNT_DETACH);
    }
  } unmount{shared};

  v1::PodSandboxConfig pod_config = Pod("csi", false);
  pod_config.mutable_linux()->mutable_security_context()->set_privileged(true);
  std::string pod;
  grpc::Status s = RunPod(pod_config, "", &pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  v1::ContainerConfig c =
      Container("plugin", {"sh", "-c",
                           "mkdir -p /mnt/d/sub && mount -t tmpfs tmpfs /mnt/d/sub && "
                           "echo from-the-pod > /mnt/d/sub/f && sleep 1000"});
  c.mutable_linux()->mutable_security_context()->set_privileged(true);
  v1::Mount* m = c.add_mounts();
  m->set_container_path("/mnt/d");
  m->set_host_path(shared);
  m->set_propagation(v1::PROPAGATION_BIDIRECTIONAL);
  std::string id = RunContainer(pod, pod_config, c);
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor(shared + "/sub/f", "from-the-pod")) << daemon_->ReadLog();
  EXPECT_THAT(ReadAll("/proc/self/mountinfo"), HasSubstr(shared + "/sub"));
}

// Read-only host mounts: recursive ones hold at every depth, the others (as runc) at the top only.
TEST_F(HostHandlerE2eTest, RecursiveReadOnlyMountsHoldAtEveryDepth) {
  const std::string data = dir_.Join("data");
  fs::create_directories(data + "/sub");
  ASSERT_EQ(::mount("tmpfs", (data + "/sub").c_str(), "tmpfs", 0, "size=1m"), 0);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{data + "/sub"};

  v1::PodSandboxConfig pod_config = Pod("rro", true);
  std::string pod;
  grpc::Status s = RunPod(pod_config, "", &pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  v1::ContainerConfig c = Container("reader", {"sleep", "1000"});
  for (bool recursive : {true, false}) {
    v1::Mount* m = c.add_mounts();
    m->set_container_path(recursive ? "/rro" : "/ro");
    m->set_host_path(data);
    m->set_readonly(true);
    m->set_recursive_read_only(recursive);
  }
  std::string id = RunContainer(pod, pod_config, c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  v1::ExecSyncResponse out;
  ASSERT_TRUE(Exec(id,
                   {"sh", "-c",
                    "touch /rro/sub/a 2>/dev/null; echo rro-sub=$?; touch /rro/b 2>/dev/null; "
                    "echo rro-top=$?; touch /ro/sub/c; echo ro-sub=$?; touch /ro/d 2>/dev/null; "
                    "echo ro-top=$?"},
                   &out)
                  .ok());
  EXPECT_EQ(out.stdout(), "rro-sub=1\nrro-top=1\nro-sub=0\nro-top=1\n") << out.stderr();
  EXPECT_TRUE(fs::exists(data + "/sub/c"));
  EXPECT_FALSE(fs::exists(data + "/sub/a"));
  // Nothing of the staged copy is left in the node's mount namespace while the container runs:
  // the host's submount goes, and its directory with it, as with any other runtime.
  EXPECT_THAT(ReadAll("/proc/self/mountinfo"), ::testing::Not(HasSubstr("/rro/")));
  ASSERT_EQ(::umount2((data + "/sub").c_str(), 0), 0) << strerror(errno);
  std::error_code ec;
  EXPECT_TRUE(fs::remove(data + "/sub", ec)) << ec.message();
  // The staged copy goes with the container.
  v1::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod);
  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(60).get(), stop, &stopped).ok());
  ASSERT_TRUE(RemovePod(pod).ok());
  EXPECT_THAT(ReadAll("/proc/self/mountinfo"), ::testing::Not(HasSubstr("/rro/")));
}

// CRI Mount.image in a host pod: an image's layers stacked read-only on the host, a sub path of
// it resolved inside the image (symlinks included), the image in use while mounted, nothing left
// mounted when the pod goes.
TEST_F(HostHandlerE2eTest, ImageVolumesMountAnImageReadOnly) {
  constexpr char kData[] = "docker.io/library/data:1";
  OciLayout layout(dir_.Join("data-layout"));
  layout.Tag(
      "1",
      layout.AddImage(
          {OciLayout::MakeLayer({Dir("data"), File("data/a", "one\n"), File("data/old", "old\n"),
                                 Dir("etc"), File("etc/passwd", "image-passwd\n"),
                                 Symlink("escape", "/etc"), Symlink("up", "../../../../../../etc")},
                                Compression::kGzip),
           OciLayout::MakeLayer({Dir("data"), File("data/a", "two\n")}, Compression::kGzip)}));
  ASSERT_EQ(Push(layout, "1", registry_->host() + "/library/data:1"), "");
  v1::ContainerConfig c = Container("reader", {"sleep", "1000"});
  auto image_mount = [&](v1::ContainerConfig* config, const std::string& image,
                         const std::string& path, const std::string& sub) {
    v1::Mount* m = config->add_mounts();
    m->set_container_path(path);
    m->mutable_image()->set_image(image);
    m->set_image_sub_path(sub);
    m->set_readonly(true);
  };
  image_mount(&c, kData, "/img", "");
  image_mount(&c, kData, "/sub", "data");
  image_mount(&c, kData, "/pw", "escape/passwd");
  image_mount(&c, kData, "/up", "up/passwd");
  v1::PodSandboxConfig pod_config = Pod("imgvol", true);
  std::string pod;
  grpc::Status s = RunPod(pod_config, "", &pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();

  // Not pulled yet: CreateContainer does not pull, as with containerd and CRI-O.
  v1::CreateContainerRequest req;
  req.set_pod_sandbox_id(pod);
  *req.mutable_config() = c;
  *req.mutable_sandbox_config() = pod_config;
  v1::CreateContainerResponse resp;
  s = cri_->runtime().CreateContainer(CriClient::Context(120).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("not pulled"));
  v1::PullImageRequest pull;
  pull.mutable_image()->set_image(kData);
  v1::PullImageResponse pulled;
  s = cri_->image().PullImage(CriClient::Context(120).get(), pull, &pulled);
  ASSERT_TRUE(s.ok()) << s.error_message();

  std::string id = RunContainer(pod, pod_config, c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  v1::ExecSyncResponse out;
  ASSERT_TRUE(Exec(id, {"sh", "-c", "cat /img/data/a /img/data/old /sub/a /pw /up"}, &out).ok());
  // The top layer wins; the symlinks resolve inside the image, not on the node.
  EXPECT_EQ(out.stdout(), "two\nold\ntwo\nimage-passwd\nimage-passwd\n") << out.stderr();
  out.Clear();
  ASSERT_TRUE(Exec(id,
                   {"sh", "-c",
                    "echo x > /img/new 2>/dev/null; echo img=$?; echo x > /sub/a 2>/dev/null; "
                    "echo sub=$?; echo x > /pw 2>/dev/null; echo file=$?"},
                   &out)
                  .ok());
  EXPECT_EQ(out.stdout(), "img=1\nsub=1\nfile=1\n") << out.stderr();

  // A sub path the image lacks fails the create.
  v1::ContainerConfig missing = Container("missing", {"true"});
  image_mount(&missing, kData, "/img", "data/none");
  *req.mutable_config() = missing;
  s = cri_->runtime().CreateContainer(CriClient::Context(120).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("data/none"));

  // In use while mounted: RemoveImage drops its names (as containerd does) but the image itself
  // stays, found by its id, until no container mounts it.
  v1::RemoveImageRequest rm;
  rm.mutable_image()->set_image(kData);
  v1::RemoveImageResponse removed;
  s = cri_->image().RemoveImage(CriClient::Context().get(), rm, &removed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::ImageStatusRequest status;
  status.mutable_image()->set_image(pulled.image_ref());
  v1::ImageStatusResponse image_status;
  s = cri_->image().ImageStatus(CriClient::Context().get(), status, &image_status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(image_status.image().id(), pulled.image_ref()) << "an image a volume uses was deleted";
  out.Clear();
  ASSERT_TRUE(Exec(id, {"cat", "/img/data/a"}, &out).ok());
  EXPECT_EQ(out.stdout(), "two\n");

  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(60).get(), stop, &stopped).ok());
  ASSERT_TRUE(RemovePod(pod).ok());
  EXPECT_THAT(ReadAll("/proc/self/mountinfo"), ::testing::Not(HasSubstr("image-volumes")));
}

TEST_F(HostHandlerE2eTest, VmPodsRefuseBidirectionalPropagation) {
  // CreateContainer in a VM pod: no VM boots here, but the request is refused before that.
  v1::CreateContainerRequest req;
  req.set_pod_sandbox_id("0123456789abcdef");
  v1::ContainerConfig c = Container("x", {"true"});
  v1::Mount* m = c.add_mounts();
  m->set_container_path("/mnt");
  m->set_host_path("/tmp");
  m->set_propagation(v1::PROPAGATION_BIDIRECTIONAL);
  *req.mutable_config() = c;
  v1::CreateContainerResponse resp;
  grpc::Status s = cri_->runtime().CreateContainer(CriClient::Context().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("bidirectional"));

  // Nor can a pod VM share the node's PID namespace.
  c = Container("x", {"true"});
  c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::NODE);
  *req.mutable_config() = c;
  s = cri_->runtime().CreateContainer(CriClient::Context().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("pid=NODE"));
}

// `kubectl exec -it` into a host container: a terminal (stdout and stderr merged, CRLF), input
// ended by ^D, window size changes, the exit code; a command crun cannot run ends the session
// with an error rather than leaving it open.
TEST_F(HostHandlerE2eTest, ExecWithATerminal) {
  v1::PodSandboxConfig pod_config = Pod("tty", true);
  std::string pod;
  grpc::Status s = RunPod(pod_config, "", &pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  std::string id = RunContainer(pod, pod_config, Container("sleeper", {"sleep", "1000"}));
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  auto url = [&](std::vector<std::string> cmd, bool in) {
    v1::ExecRequest req;
    req.set_container_id(id);
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(true);
    req.set_tty(true);
    v1::ExecResponse resp;
    grpc::Status st = cri_->runtime().Exec(CriClient::Context().get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.url();
  };
  constexpr char kSuccess[] = R"({"metadata":{},"status":"Success"})";
  ExecOptions tty;
  tty.tty = true;
  tty.err = false;
  ExecResult r =
      SpdyExec(url({"sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty >&2"}, false), tty);
  EXPECT_EQ(r.http_status, 101);
  EXPECT_EQ(r.out, "is-a-tty\r\n") << daemon_->ReadLog();
  EXPECT_EQ(r.error, kSuccess);

  // End of input reaches the reader as ^D.
  ExecOptions piped = tty;
  piped.in = true;
  piped.stdin_data = "abc\n";
  r = SpdyExec(url({"cat"}, true), piped);
  EXPECT_THAT(r.out, HasSubstr("abc\r\n"));
  EXPECT_EQ(r.error, kSuccess);

  // An interactive shell: resized, fed, told to exit with a code.
  ExecOptions shell = tty;
  shell.in = true;
  shell.close_stdin = false;
  shell.resizes = {{100, 40}};
  shell.stdin_data =
      "for i in $(seq 100); do s=$(stty size); [ \"$s\" = \"40 100\" ] && break; sleep 0.1; "
      "done; echo size=$s; echo $((6 * 7)); exit 5\n";
  r = SpdyExec(url({"sh"}, true), shell);
  EXPECT_THAT(r.out, HasSubstr("size=40 100\r\n"));
  EXPECT_THAT(r.out, HasSubstr("42\r\n"));
  nlohmann::json status = nlohmann::json::parse(r.error, nullptr, false);
  ASSERT_FALSE(status.is_discarded()) << r.error;
  EXPECT_EQ(status["details"]["causes"][0]["message"], "5");

  r = SpdyExec(url({"/no/such/command"}, false), tty);
  EXPECT_NE(r.error, kSuccess);
  EXPECT_FALSE(r.error.empty());
  // Nothing of the sessions is left behind: no process file, no console socket.
  EXPECT_TRUE(fs::is_empty(dir_.Join("root") + "/host/containers/" + id + "/exec"));
}

// A container with a terminal, as `kubectl debug node/... -it` or `kubectl run -it` makes one:
// its stdio is a pty; an attach feeds it, resizes it and reads it; the log has its output (as
// stdout) whether or not anyone attached.
TEST_F(HostHandlerE2eTest, TerminalContainersAttachAndLog) {
  v1::PodSandboxConfig pod_config = Pod("ttyctr", true);
  std::string pod;
  grpc::Status s = RunPod(pod_config, "", &pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  v1::ContainerConfig c =
      Container("shell", {"sh", "-c",
                          "test -t 0 && test -t 1 && echo tty-yes; read line; "
                          "for i in $(seq 100); do s=$(stty size); [ \"$s\" = \"30 90\" ] && "
                          "break; sleep 0.1; done; echo got=$line size=$s; exit 4"});
  c.set_tty(true);
  c.set_stdin(true);
  c.set_stdin_once(true);
  std::string id = RunContainer(pod, pod_config, c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  ASSERT_TRUE(WaitFor(dir_.Join("logs/ttyctr/shell.log"), "tty-yes"))
      << ReadAll(dir_.Join("logs/ttyctr/shell.log")) << daemon_->ReadLog();

  v1::AttachRequest req;
  req.set_container_id(id);
  req.set_stdin(true);
  req.set_stdout(true);
  req.set_tty(true);
  v1::AttachResponse resp;
  ASSERT_TRUE(cri_->runtime().Attach(CriClient::Context().get(), req, &resp).ok());
  ExecOptions attach;
  attach.tty = true;
  attach.in = true;
  attach.err = false;
  attach.stdin_data = "hello\n";
  attach.close_stdin = false;
  attach.resizes = {{90, 30}};
  ExecResult r = SpdyExec(resp.url(), attach);
  EXPECT_THAT(r.out, HasSubstr("got=hello size=30 90\r\n")) << daemon_->ReadLog();

  v1::ContainerStatus st = WaitExited(id);
  EXPECT_EQ(st.exit_code(), 4);
  const std::string log = ReadAll(dir_.Join("logs/ttyctr/shell.log"));
  EXPECT_THAT(log, HasSubstr(" stdout F tty-yes"));
  EXPECT_THAT(log, HasSubstr(" stdout F got=hello size=30 90"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(" stderr ")));
}

// The security context checks of a VM pod hold on the host too; ALL capabilities means all the
// node can give (its bounding set, which may lack some here), and naming one it lacks is refused.
TEST_F(HostHandlerE2eTest, SecurityContextChecksAndAllCapabilities) {
  v1::PodSandboxConfig pod_config = Pod("caps", true);
  std::string pod;
  grpc::Status s = RunPod(pod_config, "", &pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  auto create = [&](const v1::ContainerConfig& c, std::string* id) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    *req.mutable_config() = c;
    *req.mutable_sandbox_config() = pod_config;
    v1::CreateContainerResponse resp;
    grpc::Status st = cri_->runtime().CreateContainer(CriClient::Context(60).get(), req, &resp);
    *id = resp.container_id();
    return st;
  };
  std::string id;
  v1::ContainerConfig group_only = Container("group", {"sleep", "1000"});
  group_only.mutable_linux()->mutable_security_context()->mutable_run_as_group()->set_value(5);
  s = create(group_only, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("run_as_group"));

  auto hex_field = [](const std::string& status, const std::string& name) {
    const size_t at = status.find(name + ":\t");
    return at == std::string::npos ? std::string() : status.substr(at + name.size() + 2, 16);
  };
  const std::string bounding = hex_field(ReadAll("/proc/self/status"), "CapBnd");
  ASSERT_EQ(bounding.size(), 16u);
  v1::ContainerConfig all = Container("all", {"sleep", "1000"});
  all.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_add_capabilities(
      "ALL");
  std::string all_id = RunContainer(pod, pod_config, all);
  ASSERT_FALSE(all_id.empty()) << daemon_->ReadLog();
  v1::ExecSyncResponse out;
  ASSERT_TRUE(Exec(all_id, {"cat", "/proc/self/status"}, &out).ok());
  EXPECT_EQ(hex_field(out.stdout(), "CapEff"), bounding);
  EXPECT_EQ(hex_field(out.stdout(), "CapPrm"), bounding);

  // CAP_SYS_RESOURCE (bit 24): refused by name where the node lacks it, given where it has it.
  const bool node_has = (std::stoull(bounding, nullptr, 16) >> 24) & 1;
  v1::ContainerConfig named = Container("named", {"sleep", "1000"});
  named.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_add_capabilities(
      "SYS_RESOURCE");
  s = create(named, &id);
  if (node_has) {
    EXPECT_TRUE(s.ok()) << s.error_message();
  } else {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("CAP_SYS_RESOURCE"));
  }
}

// A hostPID pod (as kubelet sends it: NODE on the pod and on each container) runs on the host
// handler, and its containers see the node's processes: this test's own among them.
TEST_F(HostHandlerE2eTest, HostPidContainersSeeTheNodesProcesses) {
  v1::PodSandboxConfig pod_config = Pod("hostpid", false);
  pod_config.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(
      v1::NODE);
  std::string pod;
  grpc::Status s = RunPod(pod_config, "", &pod);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  v1::ContainerConfig c = Container("top", {"sleep", "1000"});
  c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::NODE);
  std::string id = RunContainer(pod, pod_config, c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  v1::ExecSyncResponse out;
  const std::string me = std::to_string(::getpid());
  ASSERT_TRUE(Exec(id, {"sh", "-c", "cat /proc/" + me + "/status | grep ^Pid:"}, &out).ok());
  EXPECT_EQ(out.exit_code(), 0) << out.stderr();
  EXPECT_THAT(out.stdout(), HasSubstr(me));

  // A container of the same pod asking for its own namespace gets one: PID 1 is its sleep.
  v1::ContainerConfig own = Container("own", {"sleep", "1000"});
  std::string own_id = RunContainer(pod, pod_config, own);
  ASSERT_FALSE(own_id.empty()) << daemon_->ReadLog();
  out.Clear();
  ASSERT_TRUE(Exec(own_id, {"cat", "/proc/1/comm"}, &out).ok());
  EXPECT_EQ(out.stdout(), "sleep\n") << out.stderr();
}

TEST_F(HostHandlerE2eTest, ContainerEventsArriveInOrderWithStatuses) {
  auto context = CriClient::Context(120);
  v1::GetEventsRequest req;
  std::unique_ptr<grpc::ClientReader<v1::ContainerEventResponse>> events =
      cri_->runtime().GetContainerEvents(context.get(), req);
  events->WaitForInitialMetadata();  // subscribed: nothing from here on is missed

  v1::PodSandboxConfig pod_config = Pod("evented", true);
  std::string pod;
  ASSERT_TRUE(RunPod(pod_config, "", &pod).ok());
  {
    // A create that fails after its record is written (crun create finds no such executable)
    // is no container: no event for it, nor is it ever listed.
    v1::CreateContainerRequest broken;
    broken.set_pod_sandbox_id(pod);
    *broken.mutable_config() = Container("broken", {"/no/such/executable"});
    *broken.mutable_sandbox_config() = pod_config;
    v1::CreateContainerResponse resp;
    grpc::Status s = cri_->runtime().CreateContainer(CriClient::Context(120).get(), broken, &resp);
    ASSERT_FALSE(s.ok());
    v1::ListContainersResponse listed;
    ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &listed).ok());
    EXPECT_EQ(listed.containers_size(), 0);
  }
  // Exits on its own: the STOPPED event comes from the monitor's exit, not from a call.
  std::string quick = RunContainer(pod, pod_config, Container("quick", {"sh", "-c", "sleep 1"}));
  ASSERT_FALSE(quick.empty());

  std::vector<v1::ContainerEventResponse> got;
  auto next = [&](v1::ContainerEventType want_type, const std::string& want_id) {
    v1::ContainerEventResponse e;
    if (!events->Read(&e)) {
      ADD_FAILURE() << "stream ended before " << want_id << " " << want_type;
      return e;
    }
    EXPECT_EQ(e.container_id(), want_id);
    EXPECT_EQ(e.container_event_type(), want_type) << e.DebugString();
    EXPECT_EQ(e.pod_sandbox_status().id(), pod);
    if (!got.empty()) {
      EXPECT_GE(e.created_at(), got.back().created_at());
    }
    got.push_back(e);
    return e;
  };
  v1::ContainerEventResponse e = next(v1::CONTAINER_CREATED_EVENT, pod);
  e = next(v1::CONTAINER_STARTED_EVENT, pod);
  EXPECT_EQ(e.pod_sandbox_status().state(), v1::SANDBOX_READY);
  e = next(v1::CONTAINER_CREATED_EVENT, quick);
  ASSERT_EQ(e.containers_statuses_size(), 1);
  EXPECT_EQ(e.containers_statuses(0).id(), quick);
  EXPECT_EQ(e.containers_statuses(0).state(), v1::CONTAINER_CREATED);
  e = next(v1::CONTAINER_STARTED_EVENT, quick);
  ASSERT_EQ(e.containers_statuses_size(), 1);
  EXPECT_EQ(e.containers_statuses(0).state(), v1::CONTAINER_RUNNING);
  e = next(v1::CONTAINER_STOPPED_EVENT, quick);
  ASSERT_EQ(e.containers_statuses_size(), 1);
  EXPECT_EQ(e.containers_statuses(0).state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(e.containers_statuses(0).exit_code(), 0);

  v1::RemoveContainerRequest rm;
  rm.set_container_id(quick);
  v1::RemoveContainerResponse removed;
  ASSERT_TRUE(cri_->runtime().RemoveContainer(CriClient::Context(60).get(), rm, &removed).ok());
  e = next(v1::CONTAINER_DELETED_EVENT, quick);
  EXPECT_EQ(e.containers_statuses_size(), 0);
  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(60).get(), stop, &stopped).ok());
  e = next(v1::CONTAINER_STOPPED_EVENT, pod);
  EXPECT_EQ(e.pod_sandbox_status().state(), v1::SANDBOX_NOTREADY);
  ASSERT_TRUE(RemovePod(pod).ok());
  next(v1::CONTAINER_DELETED_EVENT, pod);
  context->TryCancel();
  while (events->Read(&e)) {
  }
  EXPECT_EQ(events->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// By name: <signal.h> defines the CRI enum's names as macros.
v1::Signal CriSignal(const char* name) {
  v1::Signal s = v1::RUNTIME_DEFAULT;
  EXPECT_TRUE(v1::Signal_Parse(name, &s)) << name;
  return s;
}

TEST_F(HostHandlerE2eTest, StopContainerSendsTheConfiguredStopSignal) {
  v1::PodSandboxConfig pod_config = Pod("stopper", true);
  std::string pod;
  ASSERT_TRUE(RunPod(pod_config, "", &pod).ok());
  v1::ContainerConfig c = Container(
      "graceful", {"sh", "-c", "trap 'echo got-usr1; exit 0' USR1; echo ready; "
                               "while true; do sleep 0.1; done"});
  c.set_stop_signal(CriSignal("SIGUSR1"));
  std::string id = RunContainer(pod, pod_config, c);
  ASSERT_FALSE(id.empty());
  const std::string log = dir_.Join("logs/stopper/graceful.log");
  ASSERT_TRUE(WaitFor(log, "ready"));
  EXPECT_EQ(v1::Signal_Name(Status(id).stop_signal()), "SIGUSR1");
  // Without a stop signal: the image has none, so SIGTERM.
  std::string plain = RunContainer(pod, pod_config, Container("plain", {"sleep", "1000"}));
  EXPECT_EQ(v1::Signal_Name(Status(plain).stop_signal()), "SIGTERM");

  v1::StopContainerRequest stop;
  stop.set_container_id(id);
  stop.set_timeout(20);
  v1::StopContainerResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopContainer(CriClient::Context(60).get(), stop, &stopped).ok());
  v1::ContainerStatus st = Status(id);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0) << "the trap ran: not killed";
  EXPECT_TRUE(WaitFor(log, "got-usr1")) << ReadAll(log);
}

TEST_F(HostHandlerE2eTest, StreamListsMatchTheListRpcs) {
  v1::PodSandboxConfig pod_config = Pod("streamed", true);
  pod_config.mutable_labels()->insert({"app", "streamed"});
  std::string pod, other;
  ASSERT_TRUE(RunPod(pod_config, "", &pod).ok());
  ASSERT_TRUE(RunPod(Pod("other", true), "", &other).ok());
  std::string a = RunContainer(pod, pod_config, Container("a", {"sleep", "1000"}));
  std::string b = RunContainer(pod, pod_config, Container("b", {"sleep", "1000"}));
  ASSERT_FALSE(a.empty() || b.empty());

  {  // StreamPodSandboxes with a label filter: the one pod.
    auto ctx = CriClient::Context();
    v1::StreamPodSandboxesRequest req;
    req.mutable_filter()->mutable_label_selector()->insert({"app", "streamed"});
    auto reader = cri_->runtime().StreamPodSandboxes(ctx.get(), req);
    std::vector<std::string> ids;
    v1::StreamPodSandboxesResponse page;
    while (reader->Read(&page)) {
      for (const auto& p : page.pod_sandboxes()) ids.push_back(p.id());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_THAT(ids, ::testing::ElementsAre(pod));
  }
  {  // StreamContainers filtered by pod: both containers, as ListContainers has them.
    auto ctx = CriClient::Context();
    v1::StreamContainersRequest req;
    req.mutable_filter()->set_pod_sandbox_id(pod);
    auto reader = cri_->runtime().StreamContainers(ctx.get(), req);
    std::vector<std::string> ids;
    v1::StreamContainersResponse page;
    while (reader->Read(&page)) {
      for (const auto& c : page.containers()) {
        EXPECT_EQ(c.state(), v1::CONTAINER_RUNNING);
        ids.push_back(c.id());
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_THAT(ids, ::testing::UnorderedElementsAre(a, b));
  }
  {  // StreamContainerStats for one container.
    auto ctx = CriClient::Context();
    v1::StreamContainerStatsRequest req;
    req.mutable_filter()->set_id(a);
    auto reader = cri_->runtime().StreamContainerStats(ctx.get(), req);
    int n = 0;
    v1::StreamContainerStatsResponse page;
    while (reader->Read(&page)) {
      for (const auto& st : page.container_stats()) {
        EXPECT_EQ(st.attributes().id(), a);
        EXPECT_GT(st.memory().working_set_bytes().value(), 0u);
        ++n;
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(n, 1);
  }
  {  // StreamPodSandboxStats: both ready pods.
    auto ctx = CriClient::Context();
    auto reader = cri_->runtime().StreamPodSandboxStats(ctx.get(), {});
    std::vector<std::string> ids;
    v1::StreamPodSandboxStatsResponse page;
    while (reader->Read(&page)) {
      for (const auto& st : page.pod_sandbox_stats()) ids.push_back(st.attributes().id());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_THAT(ids, ::testing::UnorderedElementsAre(pod, other));
  }
  {  // StreamImages: the one image.
    auto ctx = CriClient::Context();
    auto reader = cri_->image().StreamImages(ctx.get(), {});
    int n = 0;
    v1::StreamImagesResponse page;
    while (reader->Read(&page)) n += page.images_size();
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(n, 1);
  }
}

TEST_F(HostHandlerE2eTest, PodSandboxMetricsCarryTheContainersFigures) {
  v1::PodSandboxConfig pod_config = Pod("measured", true);
  std::string pod;
  ASSERT_TRUE(RunPod(pod_config, "", &pod).ok());
  ASSERT_FALSE(RunContainer(pod, pod_config, Container("a", {"sleep", "1000"})).empty());
  ASSERT_FALSE(RunContainer(pod, pod_config, Container("b", {"sleep", "1000"})).empty());
  v1::ListMetricDescriptorsResponse descriptors;
  ASSERT_TRUE(cri_->runtime()
                  .ListMetricDescriptors(CriClient::Context().get(), {}, &descriptors)
                  .ok());
  std::map<std::string, int> label_count;
  for (const auto& d : descriptors.descriptors()) label_count[d.name()] = d.label_keys_size();
  EXPECT_TRUE(label_count.contains("container_cpu_usage_seconds_total"));
  {
    v1::ListPodSandboxMetricsResponse metrics;
    ASSERT_TRUE(
        cri_->runtime().ListPodSandboxMetrics(CriClient::Context().get(), {}, &metrics).ok());
    bool found = false;
    for (const auto& p : metrics.pod_metrics()) {
      if (p.pod_sandbox_id() != pod) continue;
      EXPECT_EQ(p.container_metrics_size(), 2);
      for (const auto& cm : p.container_metrics()) {
        for (const auto& m : cm.metrics()) {
          EXPECT_EQ(m.label_values_size(), label_count[m.name()]) << m.name();
          if (m.name() == "container_memory_working_set_bytes") {
            found = true;
            EXPECT_GT(m.value().value(), 0u);
          }
        }
      }
    }
    EXPECT_TRUE(found);
  }
}

}  // namespace
}  // namespace podvisor::testing
