// User namespaces (KEP-127): the pod's maps reach every container's guest spec, the sandbox
// record keeps them, and a container that asks for another user namespace is refused.

#include "test/unit/pod-sandbox/container_controller_fixture.h"

namespace podvisor {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

UserNamespaceConfig PodUserns(uint32_t host_id = 65536, uint32_t length = 65536) {
  UserNamespaceConfig u;
  u.mode = NamespaceMode::kPod;
  u.uids = {{host_id, 0, length}};
  u.gids = {{host_id + 1000, 0, length}};
  return u;
}

class ContainerUsernsTest : public ContainerControllerTest {
 protected:
  std::string UsernsPod(const UserNamespaceConfig& userns) {
    SandboxConfig sc;
    sc.pod_name = "userns";
    sc.pod_namespace = "default";
    sc.pod_uid = "uid-2";
    sc.log_directory = dir_.Join("logs2");
    sc.userns = userns;
    absl::StatusOr<std::string> id = sandboxes_->Run(sc);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }
};

TEST_F(ContainerUsernsTest, ThePodsMapsReachTheGuestSpecAndTheRecord) {
  const std::string pod = UsernsPod(PodUserns());
  absl::StatusOr<Sandbox> record = sandbox_store_->Get(pod);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->metadata.userns, PodUserns());
  // Absent in the container (as an older client sends it): the pod's.
  ContainerConfig c = Config("a");
  ASSERT_TRUE(containers_->Create(pod, c).ok());
  // The same as the pod's (what kubelet sends).
  c = Config("b");
  c.userns = PodUserns();
  ASSERT_TRUE(containers_->Create(pod, c).ok());
  ASSERT_EQ(log_->created.size(), 2u);
  for (const auto& [id, spec] : log_->created) {
    EXPECT_THAT(spec.uid_mappings, ElementsAre(GuestIdMap{0, 65536, 65536}));
    EXPECT_THAT(spec.gid_mappings, ElementsAre(GuestIdMap{0, 66536, 65536}));
  }
}

TEST_F(ContainerUsernsTest, PodsWithoutOneGiveContainersNone) {
  ContainerConfig c = Config();
  c.userns = UserNamespaceConfig{};  // mode NODE
  ASSERT_TRUE(containers_->Create(sandbox_id_, c).ok());
  ASSERT_EQ(log_->created.size(), 1u);
  EXPECT_TRUE(log_->created[0].second.uid_mappings.empty());
  EXPECT_TRUE(log_->created[0].second.gid_mappings.empty());
}

TEST_F(ContainerUsernsTest, AContainerCannotLeaveItsPodsUserNamespace) {
  const std::string pod = UsernsPod(PodUserns());
  ContainerConfig c = Config("node");
  c.userns = UserNamespaceConfig{};
  absl::StatusOr<std::string> id = containers_->Create(pod, c);
  ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("namespace_options.userns_options"));
  EXPECT_THAT(id.status().message(), HasSubstr("no user namespace (mode NODE)"));

  c = Config("other-maps");
  c.userns = PodUserns(200000);
  id = containers_->Create(pod, c);
  ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("other uid/gid mappings"));

  c = Config("privileged");
  c.privileged = true;
  id = containers_->Create(pod, c);
  ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("privileged"));

  // A pod without one: a container cannot have one of its own either.
  c = Config("pod-mode");
  c.userns = PodUserns();
  id = containers_->Create(sandbox_id_, c);
  ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("has none (mode NODE)"));
  EXPECT_TRUE(log_->created.empty());
}

}  // namespace
}  // namespace podvisor
