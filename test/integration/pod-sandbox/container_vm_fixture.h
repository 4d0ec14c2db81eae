#pragma once

// The fixture of the container tests against real pod VMs: a busybox image (and a three-layer
// one) in a docker-registry on loopback, podvisord with a TCG guest and a private CNI bridge, and
// one running pod; helpers to create, start, stop, exec and wait as a CRI client does.

// clang-format off
#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
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

namespace v1 = runtime::v1;
namespace fs = std::filesystem;

inline constexpr char kImage[] = "docker.io/library/busybox:1.36";
inline constexpr char kLayered[] = "docker.io/library/layered:1";

// How the fixture's pod VM starts: booted (templates off) or cloned from a template VM (the
// daemon builds the template; the fixture waits for it before RunPodSandbox).
enum class PodBoot { kCold, kClone };

inline std::string PodBootName(const ::testing::TestParamInfo<PodBoot>& info) {
  return info.param == PodBoot::kClone ? "Clone" : "Cold";
}

inline std::string GuestDir() { return std::string(PODVISOR_BIN_DIR) + "/../guest"; }

inline std::string ReadAll(const std::string& path) {
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
    for (const char* applet : {"sh", "echo", "sleep", "true", "false", "cat", "touch", "env",
                                "tail", "head", "dd", "seq", "ls", "mkdir", "rm", "wc", "id",
                                "stat", "yes", "chmod", "grep", "hostname", "tr"}) {
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
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
})");
    std::ofstream(dir_.Join("config.yaml"))
        << "hypervisor:\n  accel: tcg\n  boot_timeout_seconds: 90\n"
        << "  shared_filesystem: " << (shared_filesystem_ ? "true" : "false") << "\n"
        << "  templates: " << (boot_ == PodBoot::kClone ? "true" : "false") << "\n"
        << "  template_dir: " << TemplateDir() << "\n"
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
    if (boot_ == PodBoot::kClone) {
      ASSERT_TRUE(WaitForTemplate()) << daemon_->ReadLog();
    }

    pod_config_.mutable_metadata()->set_name("pod");
    pod_config_.mutable_metadata()->set_namespace_("default");
    pod_config_.mutable_metadata()->set_uid("uid-pod");
    pod_config_.set_hostname("pod");
    pod_config_.set_log_directory(dir_.Join("logs"));
    pod_config_.mutable_dns_config()->add_servers("10.96.0.10");
    pod_config_.mutable_dns_config()->add_searches("default.svc.cluster.local");
    pod_config_.mutable_dns_config()->add_options("ndots:5");
    host_port_ = 20000 + getpid() % 20000;
    v1::PortMapping* pm = pod_config_.add_port_mappings();
    pm->set_protocol(v1::TCP);
    pm->set_container_port(8080);
    pm->set_host_port(host_port_);
    v1::RunPodSandboxRequest run;
    *run.mutable_config() = pod_config_;
    v1::RunPodSandboxResponse ran;
    s = cri_->runtime().RunPodSandbox(CriClient::Context(300).get(), run, &ran);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
    pod_ = ran.pod_sandbox_id();
    // The pod really is what the test is named for.
    EXPECT_EQ(PodTemplate().empty(), boot_ == PodBoot::kCold) << daemon_->ReadLog();
  }

  // Templates live on tmpfs, apart from dir_.
  std::string TemplateDir() {
    if (template_dir_.empty()) {
      char dir[] = "/dev/shm/podvisor-test-templates.XXXXXX";
      if (mkdtemp(dir) != nullptr) template_dir_ = dir;
    }
    return template_dir_;
  }

  // Waits until the daemon has built a template (generous: a boot under TCG on a busy host).
  bool WaitForTemplate() {
    for (int i = 0; i < 3000; ++i) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(TemplateDir(), ec)) {
        if (fs::exists(e.path() / "template.txt")) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // The template key the pod's VM was cloned from ("" when it booted cold).
  std::string PodTemplate() {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(pod_);
    req.set_verbose(true);
    v1::PodSandboxStatusResponse resp;
    grpc::Status s = cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!resp.info().contains("info")) return "";
    auto info = nlohmann::json::parse(resp.info().at("info"), nullptr, false);
    if (info.is_discarded() || !info.contains("vm")) return "";
    return info["vm"].value("template", "");
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
    if (!template_dir_.empty()) {
      KillQemuUnder(template_dir_);  // a template build the daemon's end interrupted
      fs::remove_all(template_dir_);
    }
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

  // CreateContainer in the fixture's pod, for a test that expects it may fail; the new id in `id`.
  grpc::Status TryCreate(const v1::ContainerConfig& config, std::string* id = nullptr) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod_);
    *req.mutable_config() = config;
    *req.mutable_sandbox_config() = pod_config_;
    v1::CreateContainerResponse resp;
    grpc::Status s = cri_->runtime().CreateContainer(CriClient::Context(120).get(), req, &resp);
    if (id) *id = resp.container_id();
    return s;
  }

  std::string Create(const v1::ContainerConfig& config) {
    std::string id;
    grpc::Status s = TryCreate(config, &id);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
    return id;
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
  int host_port_ = 0;
  bool shared_filesystem_ = true;  // set in a derived fixture's constructor to turn it off
  PodBoot boot_ = PodBoot::kCold;  // likewise, to clone the pod from a template
  std::string template_dir_;
};

// GET / from ip:port; the response, or "" when nothing answered within `seconds`.
inline std::string HttpGet(const std::string& ip, int port, int seconds) {
  for (int i = 0; i < seconds * 4; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string response;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const std::string request = "GET / HTTP/1.0\r\n\r\n";
      if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) response.append(buf, n);
      }
    }
    ::close(fd);
    if (!response.empty()) return response;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return "";
}

inline constexpr char kTime[] =
    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z";

}  // namespace podvisor::testing
