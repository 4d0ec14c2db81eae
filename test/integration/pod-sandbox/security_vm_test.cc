// Seccomp in real pod VMs, as critest checks it: no profile and Unconfined run without a filter,
// RuntimeDefault runs with one, a Localhost profile refuses what it lists (also with
// CAP_SYS_ADMIN), a privileged container ignores it, and a bad profile fails CreateContainer.
// Also the supplementary groups of exec'd processes, SupplementalGroupsPolicy Merge and Strict with
// ContainerStatus.user, and CAP_NET_ADMIN (a bridge).

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

  // An image whose /etc/group lists its user "app" (uid 1000) in group 50000, pulled.
  std::string PullGroupsImage() {
    std::vector<TarEntry> entries = {
        Dir("bin"),
        File("bin/busybox", ReadAll("/bin/busybox"), 0755),
        Dir("tmp"),
        Dir("etc"),
        File("etc/passwd", "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n"),
        File("etc/group", "root:x:0:\napp:x:1000:\nimagegroup:x:50000:app\n")};
    for (const char* applet : {"sh", "sleep", "id", "grep", "cat"}) {
      entries.push_back(Symlink(absl::StrCat("bin/", applet), "busybox"));
    }
    OciLayout layout(dir_.Join("groups-layout"));
    layout.Tag("1", layout.AddImage({OciLayout::MakeLayer(entries, Compression::kGzip)}));
    EXPECT_EQ(Push(layout, "1", registry_->host() + "/library/groups:1"), "");
    const std::string image = "docker.io/library/groups:1";
    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(image);
    v1::PullImageResponse pulled;
    grpc::Status s = cri_->image().PullImage(CriClient::Context(300).get(), pull, &pulled);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return image;
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

// SupplementalGroupsPolicy as Kubernetes documents it: run_as_user 1000, run_as_group 3000,
// supplemental group 4000, an image whose /etc/group lists the user in 50000. Merge gives the
// init process and execs 50000 too, Strict does not, and ContainerStatus.user (from create on)
// says what the init process holds.
TEST_F(SecurityVmTest, SupplementalGroupsPolicyMergeAndStrict) {
  const std::string image = PullGroupsImage();
  for (v1::SupplementalGroupsPolicy policy : {v1::Merge, v1::Strict}) {
    const bool strict = policy == v1::Strict;
    SCOPED_TRACE(strict ? "Strict" : "Merge");
    v1::ContainerConfig config = Config(strict ? "strict" : "merge", {"sleep", "1000"});
    config.mutable_image()->set_image(image);
    v1::LinuxContainerSecurityContext* sc = config.mutable_linux()->mutable_security_context();
    sc->mutable_run_as_user()->set_value(1000);
    sc->mutable_run_as_group()->set_value(3000);
    sc->add_supplemental_groups(4000);
    sc->set_supplemental_groups_policy(policy);
    const std::string id = Create(config);
    ASSERT_FALSE(id.empty());
    const std::vector<int64_t> groups =
        strict ? std::vector<int64_t>{3000, 4000} : std::vector<int64_t>{3000, 4000, 50000};
    v1::ContainerStatus created = Status(id);
    ASSERT_TRUE(created.has_user());
    EXPECT_EQ(created.user().linux().uid(), 1000);
    EXPECT_EQ(created.user().linux().gid(), 3000);
    EXPECT_THAT(created.user().linux().supplemental_groups(), ::testing::ElementsAreArray(groups));
    ASSERT_TRUE(Start(id).ok());
    EXPECT_EQ(Sh(id, "id -G").second, strict ? "3000 4000\n" : "3000 4000 50000\n");
    // The init process (PID 1 of its own namespace), not only the exec.
    EXPECT_EQ(Sh(id, "grep Groups: /proc/1/status").second,
              strict ? "Groups:\t3000 4000 \n" : "Groups:\t3000 4000 50000 \n");
    EXPECT_THAT(Status(id).user().linux().supplemental_groups(),
                ::testing::ElementsAreArray(groups));
  }
  v1::ContainerConfig bad = Config("bad-policy", {"sleep", "1000"});
  bad.mutable_linux()->mutable_security_context()->set_supplemental_groups_policy(
      static_cast<v1::SupplementalGroupsPolicy>(5));
  grpc::Status s = TryCreate(bad);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("supplemental_groups_policy"));
}

}  // namespace
}  // namespace podvisor::testing
