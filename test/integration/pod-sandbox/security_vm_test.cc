// Seccomp in real pod VMs, as critest checks it: no profile and Unconfined run without a filter,
// RuntimeDefault runs with one, a Localhost profile refuses what it lists (also with
// CAP_SYS_ADMIN), a privileged container ignores it, and a bad profile fails CreateContainer.
// Also the supplementary groups of exec'd processes and CAP_NET_ADMIN (a bridge).

// clang-format off
#include "test/integration/pod-sandbox/container_vm_fixture.h"  // first: CRI Signal vs <signal.h>
// clang-format on

#include <string>

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SecurityVmTest : public ContainerVmTest {
 protected:
  std::string Profile(const std::string& name, const std::string& syscalls) {
    const std::string path = dir_.Join(name);
    std::ofstream(path) << R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [)"
                        << syscalls << R"(], "action": "SCMP_ACT_ERRNO"}]})";
    return path;
  }

  v1::ContainerConfig WithSeccomp(const std::string& name, const v1::SecurityProfile* profile) {
    v1::ContainerConfig c = Config(name, {"sleep", "1000"});
    if (profile) {
      *c.mutable_linux()->mutable_security_context()->mutable_seccomp() = *profile;
    }
    return c;
  }

  // `sh -c script` in the container: exit code and stdout+stderr.
  std::pair<int, std::string> Sh(const std::string& id, const std::string& script) {
    v1::ExecSyncResponse out;
    grpc::Status s = Exec(id, {"sh", "-c", script}, 60, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {out.exit_code(), out.stdout() + out.stderr()};
  }
};

TEST_F(SecurityVmTest, SeccompProfiles) {
  const std::string seccomp_line = "grep Seccomp: /proc/self/status";
  // Left out: unconfined, as kubelet means it.
  const std::string none = Run(WithSeccomp("none", nullptr));
  ASSERT_FALSE(none.empty());
  EXPECT_THAT(Sh(none, seccomp_line).second, HasSubstr("Seccomp:\t0"));

  v1::SecurityProfile unconfined;
  unconfined.set_profile_type(v1::SecurityProfile::Unconfined);
  const std::string open = Run(WithSeccomp("unconfined", &unconfined));
  EXPECT_THAT(Sh(open, seccomp_line).second, HasSubstr("Seccomp:\t0"));

  v1::SecurityProfile runtime_default;  // the zero value
  const std::string filtered = Run(WithSeccomp("default", &runtime_default));
  ASSERT_FALSE(filtered.empty());
  EXPECT_THAT(Sh(filtered, seccomp_line).second, HasSubstr("Seccomp:\t2"));
  EXPECT_EQ(Sh(filtered, "chmod 700 /tmp").first, 0);

  v1::SecurityProfile no_chmod;
  no_chmod.set_profile_type(v1::SecurityProfile::Localhost);
  no_chmod.set_localhost_ref(Profile("no-chmod.json", R"("chmod", "fchmodat")"));
  const std::string local = Run(WithSeccomp("localhost", &no_chmod));
  ASSERT_FALSE(local.empty());
  auto [code, out] = Sh(local, "chmod 400 /");
  EXPECT_NE(code, 0);
  EXPECT_THAT(out, HasSubstr("Operation not permitted"));

  // CAP_SYS_ADMIN allows sethostname; the profile still refuses it.
  v1::SecurityProfile no_hostname;
  no_hostname.set_profile_type(v1::SecurityProfile::Localhost);
  no_hostname.set_localhost_ref(Profile("no-hostname.json", R"("sethostname")"));
  v1::ContainerConfig admin = WithSeccomp("admin", &no_hostname);
  admin.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_add_capabilities(
      "SYS_ADMIN");
  const std::string admin_id = Run(admin);
  ASSERT_FALSE(admin_id.empty());
  auto [hcode, hout] = Sh(admin_id, "hostname pod");  // the pod's own name: harmless if allowed
  EXPECT_NE(hcode, 0);
  EXPECT_THAT(hout, HasSubstr("not permitted"));

  // Privileged: no filter whatever the profile says.
  v1::ContainerConfig priv = WithSeccomp("privileged", &no_chmod);
  priv.mutable_linux()->mutable_security_context()->set_privileged(true);
  const std::string priv_id = Run(priv);
  ASSERT_FALSE(priv_id.empty());
  EXPECT_THAT(Sh(priv_id, seccomp_line).second, HasSubstr("Seccomp:\t0"));
  EXPECT_EQ(Sh(priv_id, "chmod 755 /tmp").first, 0);

  // A profile that is not there fails CreateContainer with the path in the message.
  v1::SecurityProfile missing;
  missing.set_profile_type(v1::SecurityProfile::Localhost);
  missing.set_localhost_ref(dir_.Join("missing.json"));
  grpc::Status s = TryCreate(WithSeccomp("missing", &missing));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("missing.json"));
}

// The pod's containers share its IPC namespace, so they share /dev/shm (64 MiB, as containerd).
TEST_F(SecurityVmTest, ContainersOfAPodShareDevShm) {
  const std::string a = Run(Config("shm-a", {"sleep", "1000"}));
  const std::string b = Run(Config("shm-b", {"sleep", "1000"}));
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(Sh(a, "echo segment > /dev/shm/seg").first, 0);
  EXPECT_EQ(Sh(b, "cat /dev/shm/seg").second, "segment\n");
  EXPECT_THAT(Sh(b, "grep ' /dev/shm ' /proc/mounts").second, HasSubstr("size=65536k"));
}

// namespace_options.pid: CONTAINER gives the container its own PID namespace (its command is
// PID 1), POD puts it in the pod's, where the containers see each other's processes.
TEST_F(SecurityVmTest, PidNamespaceContainerAndPod) {
  const std::string own = Run(Config("own-pid", {"sleep", "1001"}));
  ASSERT_FALSE(own.empty());
  EXPECT_EQ(Sh(own, "cat /proc/1/cmdline | tr '\\0' ' '").second, "sleep 1001 ");

  v1::ContainerConfig a = Config("pod-pid-a", {"sleep", "1002"});
  a.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::POD);
  v1::ContainerConfig b = Config("pod-pid-b", {"sleep", "1003"});
  b.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::POD);
  const std::string a_id = Run(a);
  const std::string b_id = Run(b);
  ASSERT_FALSE(a_id.empty());
  ASSERT_FALSE(b_id.empty());
  EXPECT_THAT(Sh(b_id, "cat /proc/1/cmdline").second, Not(HasSubstr("sleep")));
  EXPECT_THAT(Sh(b_id, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").second, HasSubstr("sleep 1002"));
  // The CONTAINER one stays out of sight of both.
  EXPECT_THAT(Sh(a_id, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").second,
              HasSubstr("sleep 1001"))
      << "the pod's namespace is the VM's: it holds every container's processes";
  EXPECT_THAT(Sh(own, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").second,
              Not(HasSubstr("sleep 1002")));
}

// critest "SupplementalGroups" and "adding capability": an exec'd `id -G` shows the CRI
// supplemental groups, and CAP_NET_ADMIN lets a container create a bridge (the guest kernel has
// the module; it has no modprobe to load it on demand), which it cannot without.
TEST_F(SecurityVmTest, ExecKeepsSupplementalGroupsAndNetAdminCreatesABridge) {
  v1::ContainerConfig config = Config("groups", {"sleep", "1000"});
  v1::LinuxContainerSecurityContext* sc = config.mutable_linux()->mutable_security_context();
  sc->add_supplemental_groups(1234);
  sc->add_supplemental_groups(5678);
  sc->mutable_capabilities()->add_add_capabilities("NET_ADMIN");
  const std::string id = Run(config);
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Sh(id, "id -G").second, "0 1234 5678\n");
  std::pair<int, std::string> added = Sh(id, "/bin/busybox brctl addbr pvtest0");
  EXPECT_EQ(added.first, 0) << added.second;
  const std::string plain = Run(Config("plain", {"sleep", "1000"}));
  ASSERT_FALSE(plain.empty());
  EXPECT_NE(Sh(plain, "/bin/busybox brctl addbr pvtest1").first, 0);
}

}  // namespace
}  // namespace podvisor::testing
