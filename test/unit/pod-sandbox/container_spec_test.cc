#include "pod-sandbox/container_spec.h"

#include <signal.h>

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

struct UserCase {
  const char* name;
  std::string image_user;  // the image config's User
  int64_t image_uid;       // what the image's /etc/passwd resolved it to (-1: not resolved)
  std::string image_username;
  std::optional<int64_t> run_as_user;
  std::optional<int64_t> run_as_group;
  std::string run_as_username;
  // Expected.
  std::optional<uint32_t> uid;
  std::string username;
  uint32_t gid;
  bool gid_from_passwd;
};

const UserCase kUserCases[] = {
    {"image uid:gid", "1000:50", 1000, "", {}, {}, "", 1000, "", 50, false},
    {"image uid:0 keeps group 0", "1000:0", 1000, "", {}, {}, "", 1000, "", 0, false},
    {"image uid alone: passwd group", "1000", 1000, "", {}, {}, "", 1000, "", 0, true},
    {"image name", "www", -1, "www", {}, {}, "", std::nullopt, "www", 0, true},
    {"no user: root", "", -1, "", {}, {}, "", 0, "", 0, true},
    {"run_as_user over the image", "1000:50", 1000, "", 7, {}, "", 7, "", 0, true},
    {"run_as_user and group", "1000:50", 1000, "", 7, 8, "", 7, "", 8, false},
    {"run_as_username", "1000:50", 1000, "", {}, {}, "app", std::nullopt, "app", 0, true},
    {"run_as_group 0", "", -1, "", 5, 0, "", 5, "", 0, false},
};

ImageMetadata ImageWithUser(const UserCase& c) {
  ImageMetadata image;
  image.config.cmd = {"true"};
  image.config.user = c.image_user;
  image.uid = c.image_uid;
  image.username = c.image_username;
  return image;
}

ContainerConfig ConfigWithUser(const UserCase& c) {
  ContainerConfig config;
  config.run_as_user = c.run_as_user;
  config.run_as_group = c.run_as_group;
  config.run_as_username = c.run_as_username;
  config.supplemental_groups = {40, 41};
  return config;
}

TEST(BuildProcessTest, ResolvesTheUserAndGroup) {
  for (const UserCase& c : kUserCases) {
    SCOPED_TRACE(c.name);
    ProcessSpec p = BuildProcess(ConfigWithUser(c), ImageWithUser(c));
    EXPECT_EQ(p.user.uid, c.uid);
    EXPECT_EQ(p.user.username, c.username);
    EXPECT_EQ(p.user.gid, c.gid);
    EXPECT_EQ(p.user.gid_from_passwd, c.gid_from_passwd);
    EXPECT_THAT(p.user.additional_gids, ElementsAre(40u, 41u));
  }
}

// What an exec session runs as comes from what create resolved, for every way of naming a user.
TEST(ExecProcessTest, RunsAsTheUserCreateResolved) {
  for (const UserCase& c : kUserCases) {
    SCOPED_TRACE(c.name);
    const ContainerConfig config = ConfigWithUser(c);
    const ProcessSpec created = BuildProcess(config, ImageWithUser(c));
    ContainerMetadata meta;
    meta.config = config;
    meta.env = created.env;
    meta.cwd = created.cwd;
    meta.uid = created.user.uid;
    meta.gid = created.user.gid;
    meta.gid_from_passwd = created.user.gid_from_passwd;
    meta.username = created.user.username;
    const ProcessSpec exec = ExecProcess(meta);
    EXPECT_EQ(exec.user.uid, created.user.uid);
    EXPECT_EQ(exec.user.username, created.user.username);
    EXPECT_EQ(exec.user.gid, created.user.gid);
    EXPECT_EQ(exec.user.gid_from_passwd, created.user.gid_from_passwd);
    EXPECT_EQ(exec.user.additional_gids, created.user.additional_gids);
    EXPECT_EQ(exec.env, created.env);
    EXPECT_EQ(exec.cwd, created.cwd);
  }
}

// A record written before the resolved group choice was kept: a gid of 0 nobody asked for was the
// passwd's.
TEST(ExecProcessTest, OlderRecordsInferThePasswdGroup) {
  ContainerMetadata meta;
  meta.uid = 1000;
  meta.gid = 0;
  EXPECT_TRUE(ExecProcess(meta).user.gid_from_passwd);
  meta.config.run_as_group = 0;
  EXPECT_FALSE(ExecProcess(meta).user.gid_from_passwd);
  meta.config.run_as_group.reset();
  meta.gid = 50;
  EXPECT_FALSE(ExecProcess(meta).user.gid_from_passwd);
}

// Strict tells the agent to leave the image's /etc/group out, for the container and its execs.
TEST(ExecProcessTest, SupplementalGroupsPolicyFollowsTheConfig) {
  ImageMetadata image;
  image.config.cmd = {"sleep", "1"};
  ContainerConfig config;
  config.supplemental_groups = {4000};
  EXPECT_FALSE(BuildProcess(config, image).user.strict_groups);  // Merge, the default
  config.supplemental_groups_policy = SupplementalGroupsPolicy::kStrict;
  ProcessSpec created = BuildProcess(config, image);
  EXPECT_TRUE(created.user.strict_groups);
  EXPECT_THAT(created.user.additional_gids, ElementsAre(4000u));
  ContainerMetadata meta;
  meta.config = config;
  EXPECT_TRUE(ExecProcess(meta).user.strict_groups);
}

TEST(ExecProcessTest, CapabilitiesAndNoNewPrivsFollowTheConfig) {
  ContainerMetadata meta;
  meta.config.cap_drop = {"ALL"};
  meta.config.cap_add = {"NET_ADMIN"};
  meta.config.no_new_privs = true;
  ProcessSpec p = ExecProcess(meta);
  EXPECT_THAT(p.capabilities, ElementsAre("CAP_NET_ADMIN"));
  EXPECT_TRUE(p.no_new_privileges);
  EXPECT_EQ(p.cwd, "/");
  meta.config.privileged = true;
  EXPECT_TRUE(ExecProcess(meta).capabilities.empty());
}

struct ArgsCase {
  const char* name;
  std::vector<std::string> command, args, entrypoint, cmd;
  std::vector<std::string> want;
};

TEST(BuildProcessTest, ArgsFollowCriOverTheImage) {
  const ArgsCase cases[] = {
      {"image only", {}, {}, {"/ep"}, {"c1", "c2"}, {"/ep", "c1", "c2"}},
      {"args replace cmd", {}, {"a"}, {"/ep"}, {"c1"}, {"/ep", "a"}},
      {"command replaces both", {"/bin/x"}, {}, {"/ep"}, {"c1"}, {"/bin/x"}},
      {"command and args", {"/bin/x"}, {"a", "b"}, {"/ep"}, {"c1"}, {"/bin/x", "a", "b"}},
      {"nothing", {}, {}, {}, {}, {}},
  };
  for (const ArgsCase& c : cases) {
    SCOPED_TRACE(c.name);
    ContainerConfig config;
    config.command = c.command;
    config.args = c.args;
    ImageMetadata image;
    image.config.entrypoint = c.entrypoint;
    image.config.cmd = c.cmd;
    EXPECT_EQ(BuildProcess(config, image).args, c.want);
  }
}

TEST(BuildProcessTest, EnvIsTheImagesOverriddenByKeyAndCwdFallsBack) {
  ContainerConfig config;
  config.envs = {{"FOO", "cri"}, {"NEW", "1"}};
  ImageMetadata image;
  image.config.env = {"PATH=/bin", "FOO=image", "FOOBAR=x"};
  ProcessSpec p = BuildProcess(config, image);
  EXPECT_THAT(p.env, ElementsAre("PATH=/bin", "FOO=cri", "FOOBAR=x", "NEW=1"));
  EXPECT_EQ(p.cwd, "/");
  image.config.working_dir = "/srv";
  EXPECT_EQ(BuildProcess(config, image).cwd, "/srv");
  config.working_dir = "/work";
  EXPECT_EQ(BuildProcess(config, image).cwd, "/work");
}

TEST(BuildCapabilitiesTest, DropAllThenAdd) {
  ContainerConfig c;
  c.cap_drop = {"ALL"};
  c.cap_add = {"net_bind_service"};
  EXPECT_THAT(BuildCapabilities(c), ElementsAre("CAP_NET_BIND_SERVICE"));
  c.cap_drop = {};
  c.cap_add = {"ALL"};
  EXPECT_THAT(BuildCapabilities(c), IsSupersetOf({"CAP_SYS_ADMIN", "CAP_BPF"}));
}

TEST(BuildCapabilitiesTest, DefaultsPlusAddsMinusDrops) {
  ContainerConfig c;
  c.cap_add = {"SYS_ADMIN"};
  c.cap_drop = {"cap_net_raw", "KILL"};
  std::vector<std::string> caps = BuildCapabilities(c);
  EXPECT_THAT(caps, Contains("CAP_SYS_ADMIN"));
  EXPECT_THAT(caps, Contains("CAP_CHOWN"));
  EXPECT_THAT(caps, Not(Contains("CAP_NET_RAW")));
  EXPECT_THAT(caps, Not(Contains("CAP_KILL")));
}

TEST(ParseSignalTest, NamesNumbersAndFallback) {
  const std::pair<const char*, int> cases[] = {
      {"SIGQUIT", SIGQUIT}, {"quit", SIGQUIT},  {"3", 3},        {"SIGKILL", SIGKILL},
      {"", SIGTERM},        {"BOGUS", SIGTERM}, {"99", SIGTERM}, {"SIGRTMIN+2", SIGRTMIN + 2},
  };
  for (const auto& [name, want] : cases) {
    SCOPED_TRACE(name);
    EXPECT_EQ(ParseSignal(name), want);
  }
}

TEST(ToGuestResourcesTest, CopiesWhatIsSetAndDropsNegativeShares) {
  ContainerLimits l;
  l.cpu_shares = -5;
  l.cpu_period = 100000;
  l.cpu_quota = -1;
  l.memory_limit_bytes = 64 << 20;
  l.oom_score_adj = 500;
  ContainerResources r = ToGuestResources(l);
  EXPECT_EQ(r.cpu_shares, 0u);
  EXPECT_EQ(r.cpu_period, 100000u);
  EXPECT_EQ(r.cpu_quota, -1);
  EXPECT_EQ(r.memory_limit_bytes, 64 << 20);
  EXPECT_EQ(r.oom_score_adj, std::optional<int32_t>(500));
  EXPECT_EQ(ToGuestResources(ContainerLimits{}).oom_score_adj, std::nullopt);
}

Sandbox PodWithDns(bool dns) {
  Sandbox s;
  if (dns) s.metadata.dns = SandboxDns{};
  return s;
}

TEST(BuildContainerSpecTest, OverlayOverTheLayersTopFirstAndPodFiles) {
  ImageRecord image;
  image.metadata.config.cmd = {"true"};
  ContainerConfig config;
  std::vector<LayerDisk> layers = {{"l0", 1, "/a"}, {"l1", 2, "/b"}};
  absl::StatusOr<ContainerSpec> spec =
      BuildContainerSpec(PodWithDns(false), image, config, layers, {}, {});
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(spec->rootfs_mount.has_value());
  EXPECT_THAT(spec->rootfs_mount->options,
              ElementsAre("lowerdir=/run/podvisor-layer-l1:/run/podvisor-layer-l0"));
  std::vector<std::string> destinations;
  for (const GuestMount& m : spec->mounts) destinations.push_back(m.destination);
  EXPECT_THAT(destinations, ElementsAre("/etc/hosts", "/etc/hostname"));
  spec = BuildContainerSpec(PodWithDns(true), image, config, layers, {}, {});
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->mounts.size(), 3u);
  EXPECT_THAT(spec->masked_paths, Contains("/proc/kcore"));
}

TEST(BuildContainerSpecTest, ContainersJoinTheirPodsUserNamespace) {
  ImageRecord image;
  image.metadata.config.cmd = {"true"};
  std::vector<LayerDisk> layers = {{"l0", 1, "/a"}};
  Sandbox pod = PodWithDns(false);
  const PodUserNamespace userns{{0, 65536, 65536}, {0, 65536, 65536}};
  pod.metadata.user_namespace = userns;
  // Said or left out, the container gets the pod's.
  ContainerConfig config;
  absl::StatusOr<ContainerSpec> spec = BuildContainerSpec(pod, image, config, layers, {}, {});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->user_namespace, userns);
  config.userns_given = true;
  config.user_namespace = userns;
  spec = BuildContainerSpec(pod, image, config, layers, {}, {});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->user_namespace, userns);
  // Another range, or the node's, is not the pod's.
  config.user_namespace->uids.host_id = 131072;
  EXPECT_EQ(BuildContainerSpec(pod, image, config, layers, {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  config.user_namespace.reset();
  EXPECT_EQ(BuildContainerSpec(pod, image, config, layers, {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A pod without one: a container asking for one is refused; one saying NODE is fine.
  pod.metadata.user_namespace.reset();
  spec = BuildContainerSpec(pod, image, config, layers, {}, {});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->user_namespace.has_value());
  config.user_namespace = userns;
  EXPECT_EQ(BuildContainerSpec(pod, image, config, layers, {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BuildContainerSpecTest, RefusesWhatCannotBeMet) {
  ImageRecord image;
  ContainerConfig config;
  std::vector<LayerDisk> layers = {{"l0", 1, "/a"}};
  EXPECT_THAT(
      BuildContainerSpec(PodWithDns(false), image, config, layers, {}, {}).status().message(),
      HasSubstr("no command"));
  image.metadata.config.cmd = {"true"};
  EXPECT_EQ(BuildContainerSpec(PodWithDns(false), image, config, {}, {}, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ContainerMount data;
  data.container_path = "/data";
  data.host_path = "/srv/data";
  config.mounts.push_back(data);
  EXPECT_EQ(BuildContainerSpec(PodWithDns(false), image, config, layers, {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The same mount given through the shared directory binds it from there.
  SharedVolume shared{"/data", "/srv/data", "c1/0", false};
  absl::StatusOr<ContainerSpec> spec =
      BuildContainerSpec(PodWithDns(false), image, config, layers, {}, {shared});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->mounts[0].source, std::string(kGuestSharedDir) + "/c1/0");
}

// Read-only shared volumes are enforced on the host. Plain read-only is the top mount only, so
// the guest must not make the whole volume (host submounts included) read-only; recursive
// read-only is read-only everywhere and the guest binds it "ro" too.
TEST(BuildContainerSpecTest, SharedReadOnlyVolumesLeaveSubmountsToTheHost) {
  ImageRecord image;
  image.metadata.config.cmd = {"true"};
  std::vector<LayerDisk> layers = {{"l0", 1, "/a"}};
  ContainerConfig config;
  ContainerMount ro{"/ro", "/srv/ro", true};
  ContainerMount rro{"/rro", "/srv/rro", true};
  rro.recursive_read_only = true;
  config.mounts = {ro, rro};
  SharedVolume shared_ro{"/ro", "/srv/ro", "c1/0", true};
  SharedVolume shared_rro{"/rro", "/srv/rro", "c1/1", true, true};
  absl::StatusOr<ContainerSpec> spec =
      BuildContainerSpec(PodWithDns(false), image, config, layers, {}, {shared_ro, shared_rro});
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_GE(spec->mounts.size(), 2u);
  EXPECT_EQ(spec->mounts[0].destination, "/ro");
  EXPECT_THAT(spec->mounts[0].options, Contains("rw"));
  EXPECT_THAT(spec->mounts[0].options, Not(Contains("ro")));
  EXPECT_EQ(spec->mounts[1].destination, "/rro");
  EXPECT_THAT(spec->mounts[1].options, Contains("ro"));
}

}  // namespace
}  // namespace podvisor
