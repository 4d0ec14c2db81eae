// Pod sandboxes as real VMs: the real podvisord boots QEMU guests (TCG) through libvirt, with the
// guest image from the build tree and real CNI plugins on a bridge and subnet of the test's own.

#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros

#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/support/daemon_process.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;
namespace v1 = runtime::v1;
namespace fs = std::filesystem;

std::string GuestDir() { return std::string(PODVISOR_BIN_DIR) + "/../guest"; }

bool Alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// The parent pid of `pid` (from /proc/<pid>/stat), or 0 when it is gone.
pid_t ParentOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  int ppid = 0;
  if (close == std::string::npos || std::sscanf(stat.c_str() + close + 3, "%d", &ppid) != 1) {
    return 0;
  }
  return ppid;
}

// The path of `pid`'s cgroup in the v1 hierarchy of `controller`, from /proc/<pid>/cgroup.
std::string CgroupOf(pid_t pid, const std::string& controller) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    for (absl::string_view c : absl::StrSplit(line.substr(a + 1, b - a - 1), ',')) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return "";
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

uint16_t Checksum(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (len & 1) sum += p[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

// Sends ICMP echo requests to `ip` (raw socket: the test runs as root) until one is answered or
// `attempts` seconds pass. True when the guest answered.
bool Ping(const std::string& ip, int attempts) {
  int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (fd < 0) return false;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  ::inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
  const uint16_t ident = static_cast<uint16_t>(getpid());
  bool answered = false;
  for (int seq = 1; seq <= attempts && !answered; ++seq) {
    unsigned char packet[64] = {};
    auto* icmp = reinterpret_cast<icmphdr*>(packet);
    icmp->type = ICMP_ECHO;
    icmp->un.echo.id = htons(ident);
    icmp->un.echo.sequence = htons(static_cast<uint16_t>(seq));
    icmp->checksum = Checksum(packet, sizeof packet);
    ::sendto(fd, packet, sizeof packet, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!answered && std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 200) <= 0) continue;
      unsigned char buf[1500];
      sockaddr_in from{};
      socklen_t from_len = sizeof from;
      ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < static_cast<ssize_t>(sizeof(iphdr) + sizeof(icmphdr))) continue;
      const auto* iph = reinterpret_cast<const iphdr*>(buf);
      const auto* reply = reinterpret_cast<const icmphdr*>(buf + iph->ihl * 4);
      answered = from.sin_addr.s_addr == to.sin_addr.s_addr && reply->type == ICMP_ECHOREPLY &&
                 ntohs(reply->un.echo.id) == ident;
    }
  }
  ::close(fd);
  return answered;
}

class SandboxVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(GuestDir() + "/vmlinux") || !fs::exists(GuestDir() + "/initrd.img")) {
      GTEST_FAIL() << "no guest image in " << GuestDir() << ": run deploy/setup.sh";
    }
    // A CNI network of this test's own: bridge, subnet and IPAM store unique to this process.
    const int n = getpid() % 200 + 20;
    bridge_ = absl::StrCat("pvsbx", getpid() % 100000);
    fs::create_directories(dir_.Join("cni"));
    std::ofstream(dir_.Join("cni/10-test.conflist")) << absl::StrCat(R"({
  "cniVersion": "1.0.0", "name": "pvsbx-test",
  "plugins": [
    {"type": "bridge", "bridge": ")", bridge_, R"(", "isGateway": true,
     "ipam": {"type": "host-local", "dataDir": ")", dir_.Join("ipam"), R"(",
              "ranges": [[{"subnet": "10.215.)", n, R"(.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
})");
    WriteConfig("");
  }

  void TearDown() override {
    daemon_.reset();
    if (!template_dir_.empty()) {
      KillQemuUnder(template_dir_);  // a template build the daemon's end interrupted
      fs::remove_all(template_dir_);
    }
    std::string cmd = absl::StrCat("ip link del ", bridge_, " 2>/dev/null");
    (void)::system(cmd.c_str());
    // Nothing of ours may outlive the test.
    for (pid_t pid : QemuProcessesUnder(dir_.path())) {
      ADD_FAILURE() << "QEMU process " << pid << " left behind";
      ::kill(pid, SIGKILL);
    }
  }

  void WriteConfig(const std::string& hypervisor_extra, int boot_timeout_seconds = 90) {
    std::ofstream(dir_.Join("config.yaml"))
        << "hypervisor:\n  accel: tcg\n  boot_timeout_seconds: " << boot_timeout_seconds << "\n"
        << (hypervisor_extra.find("templates:") == std::string::npos ? "  templates: false\n" : "")
        << hypervisor_extra << "cni:\n  conf_dir: " << dir_.Join("cni") << "\n";
  }

  DaemonProcess::Options Options() {
    DaemonProcess::Options o;
    o.root_dir = dir_.Join("root");
    o.state_dir = dir_.Join("st");
    o.socket_path = dir_.Join("pv.sock");
    o.config_path = dir_.Join("config.yaml");
    o.log_path = dir_.Join("podvisord.log");
    return o;
  }

  void StartDaemon() {
    daemon_ = std::make_unique<DaemonProcess>(Options());
    std::string error;
    ASSERT_TRUE(daemon_->Start(&error)) << error;
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
  }

  v1::PodSandboxConfig PodConfig(const std::string& name, uint32_t attempt = 0) {
    v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("default");
    c.mutable_metadata()->set_uid("uid-" + name);
    c.mutable_metadata()->set_attempt(attempt);
    c.set_hostname(name);
    c.set_log_directory(dir_.Join("logs/" + name));
    c.mutable_dns_config()->add_servers("10.96.0.10");
    (*c.mutable_labels())["app"] = name;
    return c;
  }

  grpc::Status Run(const v1::PodSandboxConfig& config, std::string* id,
                   const std::string& handler = "") {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    req.set_runtime_handler(handler);
    v1::RunPodSandboxResponse resp;
    grpc::Status s = cri_->runtime().RunPodSandbox(CriClient::Context(300).get(), req, &resp);
    *id = resp.pod_sandbox_id();
    return s;
  }

  grpc::Status Status(const std::string& id, v1::PodSandboxStatusResponse* resp) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    req.set_verbose(true);
    return cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, resp);
  }

  nlohmann::json Info(const std::string& id) {
    v1::PodSandboxStatusResponse resp;
    grpc::Status s = Status(id, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok() || !resp.info().contains("info")) return {};
    return nlohmann::json::parse(resp.info().at("info"));
  }

  v1::PodSandboxState State(const std::string& id) {
    v1::PodSandboxStatusResponse resp;
    EXPECT_TRUE(Status(id, &resp).ok());
    return resp.status().state();
  }

  grpc::Status Stop(const std::string& id) {
    v1::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::StopPodSandboxResponse resp;
    return cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), req, &resp);
  }

  grpc::Status Remove(const std::string& id) {
    v1::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::RemovePodSandboxResponse resp;
    return cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), req, &resp);
  }

  std::vector<v1::PodSandbox> List() {
    v1::ListPodSandboxResponse resp;
    EXPECT_TRUE(cri_->runtime().ListPodSandbox(CriClient::Context().get(), {}, &resp).ok());
    return {resp.items().begin(), resp.items().end()};
  }

  // Turns templates on, in a tmpfs directory of the test's own.
  void WriteTemplateConfig() {
    char dir[] = "/dev/shm/podvisor-test-templates.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    template_dir_ = dir;
    WriteConfig(absl::StrCat("  templates: true\n  template_dir: ", template_dir_, "\n"));
  }

  // The template directories the daemon has finished (16 hex digits each).
  std::set<std::string> ReadyTemplates() {
    std::set<std::string> keys;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(template_dir_, ec)) {
      if (fs::exists(e.path() / "template.txt")) keys.insert(e.path().filename());
    }
    return keys;
  }

  bool WaitForTemplate() {
    for (int i = 0; i < 3000 && ReadyTemplates().empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return !ReadyTemplates().empty();
  }

  TempDir dir_;
  std::string template_dir_;
  std::string bridge_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
};

TEST_F(SandboxVmTest, LifecycleLeavesNothingBehind) {
  StartDaemon();
  std::string id;
  grpc::Status s = Run(PodConfig("web"), &id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();

  std::vector<v1::PodSandbox> pods = List();
  ASSERT_EQ(pods.size(), 1u);
  EXPECT_EQ(pods[0].id(), id);
  EXPECT_EQ(pods[0].state(), v1::SANDBOX_READY);

  v1::PodSandboxStatusResponse status;
  ASSERT_TRUE(Status(id.substr(0, 12), &status).ok());
  EXPECT_EQ(status.status().metadata().name(), "web");
  EXPECT_FALSE(status.status().network().ip().empty());
  EXPECT_EQ(status.status().labels().at("app"), "web");
  nlohmann::json info = Info(id);
  const pid_t pid = info["vm"]["pid"].get<int>();
  EXPECT_TRUE(Alive(pid));
  EXPECT_EQ(info["vm"]["accelerator"], "tcg");
  EXPECT_EQ(info["vm"]["state"], "running");
  EXPECT_EQ(info["agent"]["connected"], true);
  EXPECT_FALSE(info["agent"]["version"].get<std::string>().empty());
  const std::string state_dir = info["vm"]["stateDir"];
  EXPECT_TRUE(fs::exists(state_dir));

  ASSERT_TRUE(Stop(id).ok());
  EXPECT_EQ(State(id), v1::SANDBOX_NOTREADY);
  EXPECT_FALSE(Alive(pid));
  EXPECT_TRUE(Stop(id).ok());  // idempotent

  ASSERT_TRUE(Remove(id).ok());
  EXPECT_TRUE(List().empty());
  EXPECT_FALSE(fs::exists(state_dir));
  EXPECT_TRUE(QemuProcessesUnder(dir_.path()).empty());
  EXPECT_TRUE(fs::is_empty(dir_.Join("st/netns")));
  EXPECT_TRUE(Remove(id).ok());
  EXPECT_TRUE(Stop("0123456789abcdef0123").ok());
  EXPECT_TRUE(Remove("0123456789abcdef0123").ok());
  v1::PodSandboxStatusResponse missing;
  EXPECT_EQ(Status(id, &missing).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SandboxVmTest, VmRunsInThePodsCgroupAsTheDaemonsChildAndStopLeavesNothing) {
  if (!fs::exists("/sys/fs/cgroup/memory/tasks")) GTEST_SKIP() << "needs cgroup v1 (memory)";
  StartDaemon();
  // Under this test's own memory cgroup, as kubelet's pod cgroups are under its kubepods.
  const std::string parent =
      absl::StrCat(CgroupOf(getpid(), "memory") == "/" ? "" : CgroupOf(getpid(), "memory"),
                   "/pvcg-", getpid());
  v1::PodSandboxConfig config = PodConfig("limited");
  config.mutable_linux()->set_cgroup_parent(parent);
  config.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(256ll << 20);
  config.mutable_linux()->mutable_resources()->set_cpu_quota(150000);
  config.mutable_linux()->mutable_resources()->set_cpu_period(100000);
  std::string id;
  grpc::Status s = Run(config, &id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  const pid_t qemu = Info(id)["vm"]["pid"].get<int>();
  const std::string cgroup = absl::StrCat(parent, "/podvisor-", id);
  std::vector<pid_t> vm_processes;
  for (pid_t pid : QemuProcessesUnder(dir_.path())) vm_processes.push_back(pid);
  ASSERT_GE(vm_processes.size(), 2u) << "QEMU and virtiofsd";
  for (pid_t pid : vm_processes) {
    EXPECT_EQ(CgroupOf(pid, "memory"), cgroup) << pid;
    EXPECT_EQ(CgroupOf(pid, "cpu"), cgroup) << pid;
    EXPECT_EQ(CgroupOf(pid, "pids"), cgroup) << pid;
    EXPECT_EQ(ParentOf(pid), daemon_->pid()) << "adopted by podvisord, not PID 1: " << pid;
  }
  std::ifstream limit("/sys/fs/cgroup/memory" + cgroup + "/memory.limit_in_bytes");
  uint64_t bytes = 0;
  limit >> bytes;
  EXPECT_EQ(bytes, (256ull + 128 + 256) << 20) << "VM memory (limit + guest) plus QEMU's";
  std::ifstream quota("/sys/fs/cgroup/cpu" + cgroup + "/cpu.cfs_quota_us");
  int64_t q = 0;
  quota >> q;
  EXPECT_EQ(q, 150000);

  ASSERT_TRUE(Stop(id).ok());
  // Gone when StopPodSandbox answers: no process, no zombie (kill(pid, 0) sees zombies).
  for (pid_t pid : vm_processes) EXPECT_FALSE(Alive(pid)) << pid;
  EXPECT_FALSE(Alive(qemu));
  for (const char* c : {"memory", "cpu", "cpuacct", "pids"}) {
    std::ifstream tasks(absl::StrCat("/sys/fs/cgroup/", c, cgroup, "/tasks"));
    std::string left((std::istreambuf_iterator<char>(tasks)), std::istreambuf_iterator<char>());
    EXPECT_FALSE(fs::exists(absl::StrCat("/sys/fs/cgroup/", c, cgroup))) << c << ": " << left;
  }
  ASSERT_TRUE(Remove(id).ok());
  for (const char* c : {"memory", "cpu", "cpuacct", "pids"}) {
    ::rmdir(absl::StrCat("/sys/fs/cgroup/", c, parent).c_str());
  }

  // A pod larger than the node is refused before anything is made.
  v1::PodSandboxConfig huge = PodConfig("huge");
  huge.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(1ll << 50);
  s = Run(huge, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("exceeds the node's"));
}

TEST_F(SandboxVmTest, PodIpAnswersFromInsideTheVm) {
  StartDaemon();
  std::string id;
  ASSERT_TRUE(Run(PodConfig("pingable"), &id).ok());
  v1::PodSandboxStatusResponse status;
  ASSERT_TRUE(Status(id, &status).ok());
  const std::string ip = status.status().network().ip();
  ASSERT_FALSE(ip.empty());
  // The guest kernel answers: the tap redirect, the VM's NIC and the agent's address setup work.
  EXPECT_TRUE(Ping(ip, 20)) << "no echo reply from " << ip;
  ASSERT_TRUE(Stop(id).ok());
  // After StopPodSandbox the address is gone with the VM.
  EXPECT_FALSE(Ping(ip, 2));
  ASSERT_TRUE(Remove(id).ok());
}

TEST_F(SandboxVmTest, DuplicateNameAndHostNetworkOnTheVmHandlerAreRefused) {
  StartDaemon();
  std::string id;
  ASSERT_TRUE(Run(PodConfig("dup"), &id).ok());
  std::string second;
  grpc::Status dup = Run(PodConfig("dup"), &second);
  EXPECT_EQ(dup.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(dup.error_message(), HasSubstr(id));

  v1::PodSandboxConfig host = PodConfig("hostnet");
  host.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
      v1::NODE);
  // The default handler would run this pod on the host (docs/runtime-handlers.md); the vm
  // handler cannot give a VM the node's network and says so.
  grpc::Status hs = Run(host, &second, "vm");
  EXPECT_EQ(hs.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(hs.error_message(), HasSubstr("network"));
  EXPECT_EQ(List().size(), 1u);
  ASSERT_TRUE(Remove(id).ok());
}

TEST_F(SandboxVmTest, VmKilledFromOutsideBecomesNotReady) {
  StartDaemon();
  std::string id;
  ASSERT_TRUE(Run(PodConfig("victim"), &id).ok());
  const pid_t pid = Info(id)["vm"]["pid"].get<int>();
  ASSERT_TRUE(Alive(pid));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  // The design target is 2 s; the bound here only keeps a broken build from hanging.
  v1::PodSandboxState state = v1::SANDBOX_READY;
  for (int i = 0; i < 200 && state == v1::SANDBOX_READY; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    state = State(id);
  }
  EXPECT_EQ(state, v1::SANDBOX_NOTREADY);
  EXPECT_FALSE(Info(id)["notReadyReason"].get<std::string>().empty());
  EXPECT_TRUE(Stop(id).ok());
  EXPECT_TRUE(Remove(id).ok());
}

TEST_F(SandboxVmTest, DaemonKilledWithRunningPodsFindsThemAgain) {
  StartDaemon();
  std::string running, stopped;
  ASSERT_TRUE(Run(PodConfig("keeps-running"), &running).ok());
  ASSERT_TRUE(Run(PodConfig("was-stopped"), &stopped).ok());
  ASSERT_TRUE(Stop(stopped).ok());
  const pid_t pid = Info(running)["vm"]["pid"].get<int>();

  daemon_->Kill();  // kill -9: no chance to save anything
  EXPECT_TRUE(Alive(pid)) << "pods must outlive the daemon";
  StartDaemon();

  std::map<std::string, v1::PodSandboxState> states;
  for (const auto& p : List()) states[p.id()] = p.state();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[running], v1::SANDBOX_READY);
  EXPECT_EQ(states[stopped], v1::SANDBOX_NOTREADY);
  // Readiness (re-attach) finishes in the background after the socket is up.
  nlohmann::json info;
  for (int i = 0; i < 600; ++i) {
    info = Info(running);
    if (info["agent"]["connected"] == true) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(info["agent"]["connected"], true) << info << "\n" << daemon_->ReadLog();
  EXPECT_EQ(info["vm"]["pid"].get<int>(), pid);
  EXPECT_EQ(State(running), v1::SANDBOX_READY);

  ASSERT_TRUE(Remove(running).ok());
  ASSERT_TRUE(Remove(stopped).ok());
  EXPECT_FALSE(Alive(pid));
}

// Cloned pods: the network of each is its own (the agent gives the NIC the pod's MAC), each clone
// is a new machine, and a kill -9 of the daemon finds every one again and reuses the template.
TEST_F(SandboxVmTest, ClonedPodsAreNewMachinesAndSurviveADaemonKill) {
  WriteTemplateConfig();
  StartDaemon();
  ASSERT_TRUE(WaitForTemplate()) << daemon_->ReadLog();
  const std::set<std::string> templates = ReadyTemplates();
  // The template's build left no namespace mount (its NIC's) behind.
  EXPECT_EQ(ReadAll("/proc/self/mountinfo").find(template_dir_), std::string::npos);

  std::string a, b;
  ASSERT_TRUE(Run(PodConfig("clone-a"), &a).ok()) << daemon_->ReadLog();
  ASSERT_TRUE(Run(PodConfig("clone-b"), &b).ok()) << daemon_->ReadLog();
  std::map<std::string, pid_t> pids;
  for (const std::string& id : {a, b}) {
    nlohmann::json info = Info(id);
    EXPECT_EQ(info["vm"]["template"], *templates.begin()) << daemon_->ReadLog();
    EXPECT_EQ(info["vm"]["sharedFs"], "9p");
    pids[id] = info["vm"]["pid"].get<int>();
    v1::PodSandboxStatusResponse status;
    ASSERT_TRUE(Status(id, &status).ok());
    const std::string ip = status.status().network().ip();
    EXPECT_TRUE(Ping(ip, 20)) << "no echo reply from clone " << id << " at " << ip;
  }

  daemon_->Kill();
  for (const auto& [id, pid] : pids) EXPECT_TRUE(Alive(pid)) << "clones must outlive the daemon";
  StartDaemon();
  for (const std::string& id : {a, b}) {
    nlohmann::json info;
    for (int i = 0; i < 600; ++i) {
      info = Info(id);
      if (info["agent"]["connected"] == true) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(info["agent"]["connected"], true);
    EXPECT_EQ(info["vm"]["pid"].get<int>(), pids[id]);
    EXPECT_EQ(State(id), v1::SANDBOX_READY);
  }
  // The restarted daemon finds its template on disk instead of building another.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(ReadyTemplates(), templates);
  std::string c;
  ASSERT_TRUE(Run(PodConfig("clone-c"), &c).ok());
  EXPECT_EQ(Info(c)["vm"]["template"], *templates.begin());

  for (const std::string& id : {a, b, c}) ASSERT_TRUE(Remove(id).ok());
  for (const auto& [id, pid] : pids) EXPECT_FALSE(Alive(pid));
  EXPECT_TRUE(List().empty());
}

TEST_F(SandboxVmTest, FourSandboxesAtOnce) {
  StartDaemon();
  std::vector<std::future<std::pair<grpc::Status, std::string>>> runs;
  for (int i = 0; i < 4; ++i) {
    runs.push_back(std::async(std::launch::async, [this, i] {
      std::string id;
      grpc::Status s = Run(PodConfig(absl::StrCat("par", i)), &id);
      return std::make_pair(s, id);
    }));
  }
  std::set<std::string> ids, ips;
  for (auto& f : runs) {
    auto [s, id] = f.get();
    ASSERT_TRUE(s.ok()) << s.error_message();
    ids.insert(id);
    v1::PodSandboxStatusResponse status;
    ASSERT_TRUE(Status(id, &status).ok());
    EXPECT_EQ(status.status().state(), v1::SANDBOX_READY);
    ips.insert(status.status().network().ip());
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(ips.size(), 4u);
  for (const std::string& id : ids) EXPECT_TRUE(Remove(id).ok());
  EXPECT_TRUE(QemuProcessesUnder(dir_.path()).empty());
}

TEST_F(SandboxVmTest, FailedBootLeavesNothing) {
  // A guest whose initrd is garbage never reaches the agent.
  std::ofstream(dir_.Join("bad-initrd.img")) << std::string(4096, 'x');
  WriteConfig(absl::StrCat("  initrd: ", dir_.Join("bad-initrd.img"), "\n"), 8);
  StartDaemon();
  std::string id;
  grpc::Status s = Run(PodConfig("doomed"), &id);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("console log"));
  EXPECT_TRUE(List().empty());
  EXPECT_TRUE(QemuProcessesUnder(dir_.path()).empty());
  EXPECT_TRUE(!fs::exists(dir_.Join("st/vm")) || fs::is_empty(dir_.Join("st/vm")));
  EXPECT_TRUE(!fs::exists(dir_.Join("st/netns")) || fs::is_empty(dir_.Join("st/netns")));
  // The name is free for the next attempt.
  EXPECT_EQ(Run(PodConfig("doomed"), &id).error_code(), s.error_code());
}

}  // namespace
}  // namespace podvisor::testing
