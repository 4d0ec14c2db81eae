// An operator's view of a running pod VM: podvisorctl lists it and shows its console, asks its
// agent, and the metrics count it. The real podvisord boots a real guest (TCG) for this.

#include "test/support/cri_client.h"  // first: the CRI Signal enum vs <signal.h> macros

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/support/daemon_process.h"
#include "test/support/metrics_scrape.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::Eq;
using ::testing::HasSubstr;
namespace v1 = runtime::v1;
namespace fs = std::filesystem;

std::string GuestDir() { return std::string(PODVISOR_BIN_DIR) + "/../guest"; }

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

class OperatorVmE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(GuestDir() + "/vmlinux") || !fs::exists(GuestDir() + "/initrd.img")) {
      GTEST_FAIL() << "no guest image in " << GuestDir() << ": run deploy/setup.sh";
    }
    // A CNI network of this test's own: bridge, subnet and IPAM store unique to this process.
    bridge_ = absl::StrCat("pvops", getpid() % 100000);
    fs::create_directories(dir_.Join("cni"));
    std::ofstream(dir_.Join("cni/10-test.conflist"))
        << absl::StrCat(R"({
  "cniVersion": "1.0.0", "name": "pvops-test",
  "plugins": [
    {"type": "bridge", "bridge": ")",
                        bridge_, R"(", "isGateway": true,
     "ipam": {"type": "host-local", "dataDir": ")",
                        dir_.Join("ipam"), R"(",
              "ranges": [[{"subnet": "10.216.)",
                        getpid() % 200 + 20, R"(.0/24"}]]}},
    {"type": "loopback"}
  ]
})");
    std::ofstream(dir_.Join("config.yaml"))
        << "hypervisor:\n  accel: tcg\n  boot_timeout_seconds: 120\ncni:\n  conf_dir: "
        << dir_.Join("cni") << "\n";
    DaemonProcess::Options o;
    o.root_dir = dir_.Join("root");
    o.state_dir = dir_.Join("st");
    o.socket_path = dir_.Join("pv.sock");
    o.config_path = dir_.Join("config.yaml");
    o.log_path = dir_.Join("podvisord.log");
    daemon_ = std::make_unique<DaemonProcess>(o);
    std::string error;
    ASSERT_TRUE(daemon_->Start(&error)) << error;
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
  }

  void TearDown() override {
    daemon_.reset();
    (void)::system(absl::StrCat("ip link del ", bridge_, " 2>/dev/null").c_str());
    for (pid_t pid : QemuProcessesUnder(dir_.path())) {
      ADD_FAILURE() << "QEMU process " << pid << " left behind";
      ::kill(pid, SIGKILL);
    }
  }

  std::string Ctl(const std::string& args, int* code = nullptr) {
    std::string out;
    int rc = RunCommand(
        absl::StrCat(PODVISOR_BIN_DIR, "/podvisorctl --state-dir ", dir_.Join("st"), " ", args),
        &out);
    if (code != nullptr) *code = rc;
    return out;
  }

  std::string RunPod(const std::string& name) {
    v1::RunPodSandboxRequest req;
    v1::PodSandboxConfig* c = req.mutable_config();
    c->mutable_metadata()->set_name(name);
    c->mutable_metadata()->set_namespace_("ops");
    c->mutable_metadata()->set_uid("uid-" + name);
    c->set_hostname(name);
    c->set_log_directory(dir_.Join("logs/" + name));
    v1::RunPodSandboxResponse resp;
    grpc::Status s = cri_->runtime().RunPodSandbox(CriClient::Context(300).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
    return resp.pod_sandbox_id();
  }

  std::string MetricsAddress() {
    v1::StatusRequest req;
    req.set_verbose(true);
    v1::StatusResponse resp;
    EXPECT_TRUE(cri_->runtime().Status(CriClient::Context().get(), req, &resp).ok());
    const std::string text = nlohmann::json::parse(resp.info().at("metrics"))["url"];
    absl::string_view url = text;
    absl::ConsumePrefix(&url, "http://");
    absl::ConsumeSuffix(&url, "/metrics");
    return std::string(url);
  }

  TempDir dir_;
  std::string bridge_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<CriClient> cri_;
};

TEST_F(OperatorVmE2eTest, PodvisorctlAndMetricsShowARunningPodVm) {
  const std::string id = RunPod("inspected");
  ASSERT_FALSE(id.empty());

  int code = 0;
  const std::string vms = Ctl("vms", &code);
  ASSERT_EQ(code, 0) << vms;
  std::vector<std::string> lines = absl::StrSplit(vms, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << vms;
  EXPECT_THAT(lines[0], HasSubstr("PSS"));
  EXPECT_THAT(lines[1], HasSubstr(id.substr(0, 13)));
  EXPECT_THAT(lines[1], HasSubstr("ops/inspected"));
  EXPECT_THAT(lines[1], HasSubstr("ready"));
  EXPECT_THAT(lines[1], HasSubstr("tcg"));
  EXPECT_THAT(lines[1], HasSubstr("connected"));

  nlohmann::json rows = nlohmann::json::parse(Ctl("--json vms"), nullptr, false);
  ASSERT_TRUE(rows.is_array() && rows.size() == 1) << rows;
  const pid_t pid = rows[0]["qemu_pid"].get<int>();
  EXPECT_GT(pid, 0);
  EXPECT_EQ(::kill(pid, 0), 0);
  EXPECT_EQ(rows[0]["vcpus"], 1);
  EXPECT_EQ(rows[0]["memory_mib"], 256);
  EXPECT_GT(rows[0]["pss_bytes"].get<uint64_t>(), 10u << 20);
  EXPECT_GT(rows[0]["boot_ms"].get<int64_t>(), 0);
  std::printf("pod VM: PSS %.1f MiB, RSS %.1f MiB, boot %lld ms\n",
              rows[0]["pss_bytes"].get<double>() / (1 << 20),
              rows[0]["rss_bytes"].get<double>() / (1 << 20),
              static_cast<long long>(rows[0]["boot_ms"].get<int64_t>()));

  // A unique prefix is enough, as with crictl.
  const std::string console = Ctl("console " + id.substr(0, 6), &code);
  EXPECT_EQ(code, 0) << console;
  EXPECT_THAT(console, HasSubstr("podvisor-agent"));

  nlohmann::json ping =
      nlohmann::json::parse(Ctl("agent " + id.substr(0, 8) + " ping"), nullptr, false);
  EXPECT_FALSE(ping.value("agent_version", "").empty()) << ping;
  nlohmann::json stats = nlohmann::json::parse(Ctl("agent " + id + " stats"), nullptr, false);
  EXPECT_GT(stats.value("memory_total_bytes", 0ull), 0u) << stats;
  // The guest's own view: no containers yet, the agent as PID 1, its mounts.
  nlohmann::json ps = nlohmann::json::parse(Ctl("--json agent " + id + " ps"), nullptr, false);
  ASSERT_TRUE(ps.is_object()) << ps;
  EXPECT_TRUE(ps["containers"].empty()) << ps;
  bool agent_is_pid1 = false;
  for (const nlohmann::json& p : ps["processes"]) {
    agent_is_pid1 = agent_is_pid1 || (p["pid"] == 1 && p["container_id"] == "");
  }
  EXPECT_TRUE(agent_is_pid1) << ps["processes"];
  bool has_root = false;
  for (const nlohmann::json& m : ps["mounts"]) has_root = has_root || m["target"] == "/";
  EXPECT_TRUE(has_root) << ps["mounts"];
  EXPECT_THAT(Ctl("agent " + id + " ps"), AllOf(HasSubstr("PROCESSES"), HasSubstr("MOUNTS")));

  Scrape s = ScrapeMetrics(MetricsAddress());
  ASSERT_EQ(s.http_status, 200);
  EXPECT_EQ(s.Value("podvisor_sandboxes", {{"state", "ready"}, {"handler", "vm"}}), 1);
  EXPECT_EQ(s.Value("podvisor_vm_start_duration_seconds_count", {{"mode", "cold"}}), 1);
  EXPECT_GT(s.Value("podvisor_vm_memory_pss_bytes", {{"pod", "ops/inspected"}}).value_or(0), 0);
  EXPECT_EQ(s.Value("podvisor_vm_memory_size_bytes", {{"pod", "ops/inspected"}}), 256 << 20);
  EXPECT_EQ(s.Value("podvisor_runtime_ready"), 1);

  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(id);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped).ok());
  const std::string after = Ctl("vms");
  EXPECT_THAT(after, HasSubstr("notready"));
  Ctl("agent " + id + " ping", &code);
  EXPECT_EQ(code, 1);
  v1::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(id);
  v1::RemovePodSandboxResponse removed;
  ASSERT_TRUE(cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), rm, &removed).ok());
}

// The template pool as an operator sees it: `podvisorctl templates` and the template metrics,
// while the default shape's template is built in the background and once a pod is cloned.
TEST_F(OperatorVmE2eTest, TemplatesShowTheirStateMemoryAndClones) {
  nlohmann::json rows;
  const absl::Time deadline = absl::Now() + absl::Seconds(600);
  for (;;) {
    rows = nlohmann::json::parse(Ctl("--json templates"), nullptr, false);
    ASSERT_TRUE(rows.is_array() && rows.size() == 1) << rows;
    const std::string state = rows[0]["state"];
    ASSERT_THAT(state, AnyOf(Eq("pending"), Eq("building"), Eq("ready"))) << rows;
    if (state == "ready" || absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(500));
  }
  ASSERT_EQ(rows[0]["state"], "ready") << rows << daemon_->ReadLog();
  EXPECT_EQ(rows[0]["memory_mib"], 256);
  EXPECT_GT(rows[0]["memory_file_bytes"].get<uint64_t>(), 1u << 20) << rows;
  EXPECT_GT(rows[0]["build_seconds"].get<double>(), 0) << rows;
  EXPECT_EQ(rows[0]["clones"], 0);
  EXPECT_EQ(rows[0]["key"].get<std::string>().size(), 16u) << rows;

  Scrape s = ScrapeMetrics(MetricsAddress());
  ASSERT_EQ(s.http_status, 200);
  EXPECT_EQ(s.Value("podvisor_templates", {{"state", "ready"}}), 1);
  EXPECT_EQ(s.Value("podvisor_templates", {{"state", "failed"}}), 0);
  EXPECT_EQ(s.Value("podvisor_template_builds_total", {{"result", "success"}}), 1);
  EXPECT_EQ(s.Value("podvisor_template_build_duration_seconds_count"), 1);
  EXPECT_GT(s.Value("podvisor_template_memory_bytes", {{"vcpus", "1"}, {"memory_mib", "256"}})
                .value_or(0),
            1 << 20);

  const std::string id = RunPod("cloned");
  ASSERT_FALSE(id.empty());
  rows = nlohmann::json::parse(Ctl("--json templates"), nullptr, false);
  EXPECT_EQ(rows[0]["clones"], 1) << rows;
  s = ScrapeMetrics(MetricsAddress());
  EXPECT_EQ(s.Value("podvisor_vm_start_duration_seconds_count", {{"mode", "clone"}}), 1);
  EXPECT_THAT(Ctl("templates"), AllOf(HasSubstr("STATE"), HasSubstr("ready")));

  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(id);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped).ok());
  v1::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(id);
  v1::RemovePodSandboxResponse removed;
  ASSERT_TRUE(cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), rm, &removed).ok());
}

}  // namespace
}  // namespace podvisor::testing
