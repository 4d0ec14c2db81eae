#include "pod-sandbox/seccomp.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

std::vector<std::string> Refused(const json& profile) {
  std::vector<std::string> out;
  for (const json& rule : profile["syscalls"]) {
    if (rule["action"] != "SCMP_ACT_ERRNO") continue;
    for (const json& n : rule["names"]) out.push_back(n.get<std::string>());
  }
  return out;
}

TEST(SeccompTest, UnconfinedIsNoProfile) {
  absl::StatusOr<std::string> p = SeccompProfileJson({}, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "");
}

TEST(SeccompTest, RuntimeDefaultRefusesWhatTheCapabilitiesDoNotGrant) {
  SeccompConfig c;
  c.kind = SeccompConfig::Kind::kRuntimeDefault;
  absl::StatusOr<std::string> p = SeccompProfileJson(c, {"CAP_CHOWN", "CAP_KILL"});
  ASSERT_TRUE(p.ok()) << p.status();
  json profile = json::parse(*p);
  EXPECT_EQ(profile["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_THAT(profile["architectures"], Contains("SCMP_ARCH_X86_64"));
  EXPECT_EQ(profile["syscalls"][0]["errnoRet"], 1);  // EPERM
  std::vector<std::string> refused = Refused(profile);
  for (const char* s : {"mount", "umount2", "unshare", "setns", "init_module", "kexec_load",
                        "keyctl", "bpf", "ptrace", "reboot", "clock_settime", "userfaultfd"}) {
    EXPECT_THAT(refused, Contains(s));
  }
  EXPECT_THAT(refused, Not(Contains("read")));
  EXPECT_THAT(refused, Not(Contains("sethostname")));

  // The capability that grants a syscall lifts its refusal; keyctl stays refused.
  p = SeccompProfileJson(c, {"CAP_SYS_ADMIN", "CAP_SYS_TIME", "CAP_SYS_PTRACE"});
  ASSERT_TRUE(p.ok());
  refused = Refused(json::parse(*p));
  for (const char* s : {"mount", "umount2", "unshare", "setns", "clock_settime", "ptrace"}) {
    EXPECT_THAT(refused, Not(Contains(s)));
  }
  EXPECT_THAT(refused, Contains("keyctl"));
  EXPECT_THAT(refused, Contains("init_module"));
}

class LocalhostTest : public ::testing::Test {
 protected:
  absl::StatusOr<json> Load(const std::string& text, std::set<std::string> caps = {}) {
    const std::string path = dir_.Join("profile.json");
    std::ofstream(path) << text;
    SeccompConfig c;
    c.kind = SeccompConfig::Kind::kLocalhost;
    c.localhost_path = path;
    absl::StatusOr<std::string> p = SeccompProfileJson(c, caps);
    if (!p.ok()) return p.status();
    return json::parse(*p);
  }
  testing::TempDir dir_;
};

TEST_F(LocalhostTest, OciProfilePassesThrough) {
  absl::StatusOr<json> p = Load(R"({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["defaultAction"], "SCMP_ACT_ALLOW");
  ASSERT_EQ((*p)["syscalls"].size(), 1u);
  EXPECT_EQ((*p)["syscalls"][0]["names"], json::array({"chmod", "fchmodat"}));
  EXPECT_EQ((*p)["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
}

TEST_F(LocalhostTest, DockerFormatIsEvaluatedForTheContainer) {
  absl::StatusOr<json> p = Load(R"({
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                {"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "syscalls": [
      {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
      {"name": "exit", "action": "SCMP_ACT_ALLOW"},
      {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
      {"names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW",
       "includes": {"arches": ["arm", "arm64"]}},
      {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
       "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]}
    ]})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["architectures"],
            json::array({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  EXPECT_EQ((*p)["defaultErrnoRet"], 1);
  ASSERT_EQ((*p)["syscalls"].size(), 3u);  // no mount without the cap, no ARM-only rule
  EXPECT_EQ((*p)["syscalls"][1]["names"], json::array({"exit"}));
  EXPECT_EQ((*p)["syscalls"][2]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
  EXPECT_FALSE((*p)["syscalls"][0].contains("comment"));

  p = Load(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["SYS_ADMIN"]}},
      {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
    ]})",
           {"CAP_SYS_ADMIN"});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ((*p)["syscalls"].size(), 1u);
  EXPECT_EQ((*p)["syscalls"][0]["names"], json::array({"mount"}));
}

TEST_F(LocalhostTest, BadProfilesAreClearErrors) {
  EXPECT_THAT(Load("not json").status().message(), HasSubstr("not a JSON object"));
  EXPECT_EQ(Load(R"({"syscalls": []})").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Load(R"({"defaultAction": "ALLOW"})").status().message(),
              HasSubstr("defaultAction"));
  EXPECT_THAT(Load(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"]}]})")
                  .status()
                  .message(),
              HasSubstr("SCMP_ACT_"));
  SeccompConfig c;
  c.kind = SeccompConfig::Kind::kLocalhost;
  c.localhost_path = "relative/profile.json";
  EXPECT_EQ(SeccompProfileJson(c, {}).status().code(), absl::StatusCode::kInvalidArgument);
  c.localhost_path = dir_.Join("missing.json");
  absl::StatusOr<std::string> missing = SeccompProfileJson(c, {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("missing.json"));
}

}  // namespace
}  // namespace podvisor
