// Hostile CRI input: log paths that climb out of the pod's log directory, log directories whose
// mode must survive container creation, oversized or special seccomp profiles; and the config
// keys that bound them.

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "common/config.h"
#include "common/fs.h"
#include "cri/container_convert.h"
#include "cri/sandbox_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pod-sandbox/seccomp.h"
#include "test/support/temp_dir.h"

namespace podvisor::cri {
namespace {

using ::testing::HasSubstr;

runtime::v1::ContainerConfig ContainerWithLog(const std::string& log_path) {
  runtime::v1::ContainerConfig c;
  c.mutable_metadata()->set_name("app");
  c.mutable_image()->set_image("busybox");
  c.set_log_path(log_path);
  return c;
}

TEST(CriInputLimitsTest, LogPathWithDotDotIsInvalidArgument) {
  for (const std::string bad : {"../../etc/cron.d/x", "app/../../x.log", "..", "a/.."}) {
    absl::StatusOr<ContainerConfig> c = FromProto(ContainerWithLog(bad));
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr("\"..\""));
  }
  for (const std::string good : {"app/0.log", "app..x/0.log", "..hidden/0.log", "a/.b/0.log"}) {
    EXPECT_TRUE(FromProto(ContainerWithLog(good)).ok()) << good;
  }
}

TEST(CriInputLimitsTest, LogDirectoryWithDotDotIsInvalidArgument) {
  runtime::v1::RunPodSandboxRequest r;
  auto* m = r.mutable_config()->mutable_metadata();
  m->set_name("pod");
  m->set_namespace_("ns");
  m->set_uid("uid");
  r.mutable_config()->set_log_directory("/var/log/pods/../../../etc");
  absl::StatusOr<SandboxConfig> s = FromProto(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  r.mutable_config()->set_log_directory("/var/log/pods/ns_pod_uid");
  EXPECT_TRUE(FromProto(r).ok()) << FromProto(r).status();
}

TEST(CriInputLimitsTest, EnsureDirsNeverChangesAnExistingDirectorysMode) {
  testing::TempDir dir;
  const std::string logs = dir.Join("logs");
  ASSERT_EQ(::mkdir(logs.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(logs.c_str(), 01777), 0);
  ASSERT_TRUE(EnsureDirs(logs + "/pod/app", 0755).ok());
  struct stat st {};
  ASSERT_EQ(::stat(logs.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u) << "the sticky bit was lost";
  ASSERT_EQ(::stat((logs + "/pod/app").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  // Again on what exists now: nothing changes.
  ASSERT_EQ(::chmod((logs + "/pod/app").c_str(), 0750), 0);
  ASSERT_TRUE(EnsureDirs(logs + "/pod/app", 0755).ok());
  ASSERT_EQ(::stat((logs + "/pod/app").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  std::ofstream(dir.Join("file")) << "x";
  absl::Status s = EnsureDirs(dir.Join("file/sub"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

TEST(CriInputLimitsTest, SeccompProfileIsBoundedAndMustBeARegularFile) {
  testing::TempDir dir;
  const int64_t old_limit = SeccompProfileMaxBytes();
  SetSeccompProfileMaxBytes(4096);
  SeccompConfig c;
  c.kind = SeccompConfig::Kind::kLocalhost;
  c.localhost_path = dir.Join("big.json");
  {
    std::ofstream out(c.localhost_path);
    out << R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [)";
    for (int i = 0; i < 400; ++i) out << R"({"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},)";
    out << R"({"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]})";
  }
  absl::StatusOr<std::string> big = SeccompProfileJson(c, {});
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument) << big.status();
  EXPECT_THAT(big.status().message(), HasSubstr("larger than the limit of 4096 bytes"));
  EXPECT_THAT(big.status().message(), HasSubstr("seccomp_profile_max_bytes"));
  // /dev/zero would never end; a FIFO would block.
  c.localhost_path = "/dev/zero";
  absl::StatusOr<std::string> dev = SeccompProfileJson(c, {});
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kInvalidArgument) << dev.status();
  EXPECT_THAT(dev.status().message(), HasSubstr("not a regular file"));
  c.localhost_path = dir.Join("small.json");
  std::ofstream(c.localhost_path) << R"({"defaultAction": "SCMP_ACT_ALLOW"})";
  EXPECT_TRUE(SeccompProfileJson(c, {}).ok());
  SetSeccompProfileMaxBytes(old_limit);
}

TEST(CriInputLimitsTest, LimitKeysParseAndAreBounded) {
  absl::StatusOr<Config> c = ParseConfig(
      "seccomp_profile_max_bytes: 65536\n"
      "registry:\n  max_layers: 64\n  pull_progress_timeout_seconds: 30\n"
      "  pull_min_bytes_per_second: 4096\n  min_free_disk_bytes: 1048576\n"
      "hypervisor:\n  qemu_sandbox: false\n  guest_mitigations: false\n"
      "  console_log_max_bytes: 262144\n  agent_dead_after_ms: 5000\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->seccomp_profile_max_bytes, 65536);
  EXPECT_EQ(c->registry.max_layers, 64);
  EXPECT_EQ(c->registry.pull_progress_timeout_seconds, 30);
  EXPECT_EQ(c->registry.pull_min_bytes_per_second, 4096);
  EXPECT_EQ(c->registry.min_free_disk_bytes, 1048576);
  EXPECT_FALSE(c->hypervisor.qemu_sandbox);
  EXPECT_FALSE(c->hypervisor.guest_mitigations);
  EXPECT_EQ(c->hypervisor.console_log_max_bytes, 262144);
  EXPECT_EQ(c->hypervisor.agent_dead_after_ms, 5000);
  nlohmann::json j = ConfigToJson(*c);
  EXPECT_EQ(j["registry"]["max_layers"], 64);
  EXPECT_EQ(j["hypervisor"]["console_log_max_bytes"], 262144);
  EXPECT_EQ(j["hypervisor"]["agent_dead_after_ms"], 5000);
  EXPECT_EQ(j["hypervisor"]["accel"], "auto");  // the other keys are still there
  EXPECT_EQ(j["seccomp_profile_max_bytes"], 65536);
  absl::StatusOr<Config> bad = ParseConfig("registry:\n  max_layers: 100000\n");
  EXPECT_THAT(bad.status().message(), HasSubstr("registry.max_layers"));
  // A heartbeat bound under a second would declare busy guests dead.
  absl::StatusOr<Config> hasty = ParseConfig("hypervisor:\n  agent_dead_after_ms: 500\n");
  EXPECT_THAT(hasty.status().message(), HasSubstr("hypervisor.agent_dead_after_ms"));
  // The defaults.
  Config d;
  EXPECT_TRUE(d.hypervisor.qemu_sandbox);
  EXPECT_TRUE(d.hypervisor.guest_mitigations);
  EXPECT_EQ(d.registry.max_layers, 128);
  EXPECT_EQ(d.hypervisor.agent_dead_after_ms, 30000);
}

}  // namespace
}  // namespace podvisor::cri
