// The agent's own execs: the plan built from a Process and the seccomp filter compiled from an
// OCI profile. The filter is loaded into a forked child here, so what it does is checked by the
// kernel, not by reading the program back.

#include "agent/direct_exec.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "agent/seccomp_bpf.h"
#include "pod-sandbox/seccomp.h"

namespace podvisor::agent {
namespace {

// Runs `body` in a forked child under `program`; returns the child's exit code (or 128+signal).
int RunFiltered(const SeccompProgram& program, int (*body)()) {
  pid_t pid = fork();
  if (pid == 0) {
    sock_fprog prog{static_cast<unsigned short>(program.filter.size()),
                    const_cast<sock_filter*>(program.filter.data())};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, program.flags, &prog) != 0) _exit(101);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

constexpr char kArches[] =
    R"("architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"])";

TEST(SeccompProfileTest, AnErrnoRuleReturnsItsErrnoAndLeavesOtherCallsAlone) {
  SeccompProgram program;
  Error e = CompileSeccompProfile(
      std::string(R"({"defaultAction":"SCMP_ACT_ALLOW",)") + kArches +
          R"(,"syscalls":[{"names":["mkdir","mkdirat","not_a_syscall"],"action":"SCMP_ACT_ERRNO",)"
          R"("errnoRet":38}]})",
      &program);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_FALSE(program.filter.empty());
  EXPECT_EQ(RunFiltered(program,
                        [] {
                          if (mkdir("/nonexistent-dir/x", 0755) == 0) return 1;
                          if (errno != ENOSYS) return 2;
                          return getpid() > 0 ? 0 : 3;
                        }),
            0);
}

TEST(SeccompProfileTest, AnArgumentConditionMatchesOnlyItsValue) {
  // personality(0xffffffff) is a query; only personality(8) is refused.
  SeccompProgram program;
  Error e = CompileSeccompProfile(
      std::string(R"({"defaultAction":"SCMP_ACT_ALLOW",)") + kArches +
          R"(,"syscalls":[{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":1,)"
          R"("args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]})",
      &program);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_EQ(RunFiltered(program,
                        [] {
                          if (syscall(SYS_personality, 0xffffffffUL) < 0) return 1;
                          if (syscall(SYS_personality, 8UL) != -1 || errno != EPERM) return 2;
                          return 0;
                        }),
            0);
}

TEST(SeccompProfileTest, ADefaultErrnoProfileAllowsOnlyWhatItLists) {
  SeccompProgram program;
  Error e = CompileSeccompProfile(
      std::string(R"({"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":13,)") + kArches +
          R"(,"syscalls":[{"names":["exit","exit_group","getppid"],"action":"SCMP_ACT_ALLOW"}]})",
      &program);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_EQ(RunFiltered(program,
                        [] {
                          if (syscall(SYS_getppid) <= 0) return 1;
                          if (syscall(SYS_getpid) != -1 || errno != EACCES) return 2;
                          return 0;
                        }),
            0);
}

TEST(SeccompProfileTest, AKillRuleKillsTheCaller) {
  SeccompProgram program;
  Error e = CompileSeccompProfile(
      std::string(R"({"defaultAction":"SCMP_ACT_ALLOW",)") + kArches +
          R"(,"syscalls":[{"names":["getppid"],"action":"SCMP_ACT_KILL_PROCESS"}]})",
      &program);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_EQ(RunFiltered(program, [] { return static_cast<int>(syscall(SYS_getppid) & 0); }),
            128 + SIGSYS);
}

// The profile the daemon gives a container by default compiles here, and its execs get it.
TEST(SeccompProfileTest, TheRuntimeDefaultProfileCompilesAndDenies) {
  absl::StatusOr<std::string> json =
      SeccompProfileJson({SeccompConfig::Kind::kRuntimeDefault, ""}, {"CAP_CHOWN", "CAP_KILL"});
  ASSERT_TRUE(json.ok()) << json.status();
  SeccompProgram program;
  Error e = CompileSeccompProfile(*json, &program);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_EQ(RunFiltered(program,
                        [] {
                          if (syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, 0, 0) != -1) return 1;
                          if (errno != EPERM) return 2;
                          return syscall(SYS_getppid) > 0 ? 0 : 3;
                        }),
            0);
}

TEST(SeccompProfileTest, ANotifierIsLeftToCrun) {
  SeccompProgram program;
  Error e = CompileSeccompProfile(
      R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]})",
      &program);
  EXPECT_EQ(e.code(), Code::kUnimplemented) << e.message();
  e = CompileSeccompProfile(R"({"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/x.sock"})",
                            &program);
  EXPECT_EQ(e.code(), Code::kUnimplemented) << e.message();
}

TEST(SeccompProfileTest, AnInvalidProfileIsRefusedWithItsReason) {
  const char* bad[] = {
      "not json",
      R"([1,2])",
      R"({"defaultAction":"SCMP_ACT_EXPLODE"})",
      R"({"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]})",
      R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]})",
      R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_SOMETIMES"}]}]})",
      R"({"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":"read","action":"SCMP_ACT_ERRNO"}]})",
      R"({"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WHATEVER"]})",
  };
  for (const char* profile : bad) {
    SeccompProgram program;
    Error e = CompileSeccompProfile(profile, &program);
    EXPECT_EQ(e.code(), Code::kInvalidArgument) << profile << ": " << e.message();
    EXPECT_FALSE(e.message().empty()) << profile;
  }
}

v1::Process BaseProcess() {
  v1::Process p;
  p.add_args("ls");
  p.add_args("-l");
  p.add_env("PATH=/usr/local/bin::/bin");
  p.add_env("A=b");
  p.set_cwd("/work");
  p.mutable_user()->set_uid(1000);
  p.mutable_user()->set_gid(1001);
  p.mutable_user()->add_additional_gids(5);
  p.mutable_capabilities()->add_bounding("CAP_KILL");
  p.mutable_capabilities()->add_bounding("CAP_CHOWN");
  p.mutable_capabilities()->add_effective("CAP_KILL");
  p.set_no_new_privileges(true);
  v1::Rlimit* l = p.add_rlimits();
  l->set_type("RLIMIT_NOFILE");
  l->set_soft(100);
  l->set_hard(200);
  return p;
}

TEST(DirectExecPlanTest, APlanCarriesTheProcessAsCrunWouldRunIt) {
  DirectExecPlan plan;
  Error e = BuildDirectExecPlan(BaseProcess(), false, nullptr, &plan);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_EQ(plan.argv, (std::vector<std::string>{"ls", "-l"}));
  // A bare name is looked for in the process's PATH, an empty entry meaning the cwd.
  EXPECT_EQ(plan.candidates, (std::vector<std::string>{"/usr/local/bin/ls", "./ls", "/bin/ls"}));
  EXPECT_EQ(plan.cwd, "/work");
  EXPECT_EQ(plan.uid, 1000u);
  EXPECT_EQ(plan.gid, 1001u);
  EXPECT_EQ(plan.groups, (std::vector<gid_t>{5}));
  EXPECT_EQ(plan.umask, 022u);
  EXPECT_EQ(plan.bounding, (uint64_t{1} << 5) | (uint64_t{1} << 0));
  EXPECT_EQ(plan.effective, uint64_t{1} << 5);
  EXPECT_EQ(plan.permitted, 0u);
  EXPECT_TRUE(plan.no_new_privs);
  ASSERT_EQ(plan.rlimits.size(), 1u);
  EXPECT_EQ(plan.rlimits[0].resource, RLIMIT_NOFILE);
  EXPECT_EQ(plan.rlimits[0].soft, 100u);
  EXPECT_EQ(plan.rlimits[0].hard, 200u);
}

TEST(DirectExecPlanTest, APathAndADefaultPath) {
  v1::Process p = BaseProcess();
  p.set_args(0, "./bin/tool");
  p.clear_env();
  DirectExecPlan plan;
  ASSERT_TRUE(BuildDirectExecPlan(p, false, nullptr, &plan).ok());
  EXPECT_EQ(plan.candidates, (std::vector<std::string>{"./bin/tool"}));
  ASSERT_EQ(plan.env.size(), 1u);  // the PATH an exec without one is given
  EXPECT_EQ(plan.env[0].rfind("PATH=/", 0), 0u) << plan.env[0];
}

TEST(DirectExecPlanTest, APrivilegedProcessHoldsEveryCapabilityAndNoFilter) {
  auto seccomp = std::make_shared<SeccompProgram>();
  DirectExecPlan plan;
  ASSERT_TRUE(BuildDirectExecPlan(BaseProcess(), true, seccomp, &plan).ok());
  const uint64_t all =
      plan.last_cap >= 63 ? ~uint64_t{0} : (uint64_t{1} << (plan.last_cap + 1)) - 1;
  EXPECT_EQ(plan.bounding, all);
  EXPECT_EQ(plan.effective, all);
  EXPECT_EQ(plan.permitted, all);
  EXPECT_EQ(plan.seccomp, nullptr);
}

TEST(DirectExecPlanTest, WhatOnlyCrunDoesIsLeftToIt) {
  for (int what = 1; what < 3; ++what) {
    v1::Process p = BaseProcess();
    if (what == 1) p.set_apparmor_profile("runtime/default");
    if (what == 2) p.set_selinux_label("system_u:system_r:container_t:s0");
    DirectExecPlan plan;
    EXPECT_EQ(BuildDirectExecPlan(p, false, nullptr, &plan).code(), Code::kUnimplemented) << what;
  }
}

TEST(DirectExecPlanTest, ATerminalCarriesItsSize) {
  v1::Process p = BaseProcess();
  p.set_terminal(true);
  p.set_tty_rows(40);
  p.set_tty_cols(1u << 20);  // more than a winsize holds
  DirectExecPlan plan;
  ASSERT_TRUE(BuildDirectExecPlan(p, false, nullptr, &plan).ok());
  EXPECT_TRUE(plan.terminal);
  EXPECT_EQ(plan.rows, 40);
  EXPECT_EQ(plan.cols, 0xffff);
}

TEST(DirectExecPlanTest, BadInputIsRefused) {
  DirectExecPlan plan;
  v1::Process p = BaseProcess();
  p.mutable_capabilities()->add_effective("CAP_FLY");
  EXPECT_EQ(BuildDirectExecPlan(p, false, nullptr, &plan).code(), Code::kInvalidArgument);
  p = BaseProcess();
  p.mutable_rlimits(0)->set_type("RLIMIT_TIME_TRAVEL");
  EXPECT_EQ(BuildDirectExecPlan(p, false, nullptr, &plan).code(), Code::kInvalidArgument);
  p = BaseProcess();
  p.set_args(1, std::string("a\0b", 3));
  EXPECT_EQ(BuildDirectExecPlan(p, false, nullptr, &plan).code(), Code::kInvalidArgument);
  p = BaseProcess();
  p.clear_args();
  EXPECT_EQ(BuildDirectExecPlan(p, false, nullptr, &plan).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace podvisor::agent
