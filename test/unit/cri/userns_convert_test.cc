// namespace_options.userns_options of RunPodSandbox and CreateContainer: what is accepted, what
// is refused (INVALID_ARGUMENT naming the field), and what PodSandboxStatus echoes.
#include "cri/container_convert.h"
#include "cri/sandbox_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

void AddMap(google::protobuf::RepeatedPtrField<runtime::v1::IDMapping>* maps, uint32_t host,
            uint32_t container, uint32_t length) {
  runtime::v1::IDMapping* m = maps->Add();
  m->set_host_id(host);
  m->set_container_id(container);
  m->set_length(length);
}

runtime::v1::RunPodSandboxRequest Pod() {
  runtime::v1::RunPodSandboxRequest r;
  auto* m = r.mutable_config()->mutable_metadata();
  m->set_name("web");
  m->set_namespace_("default");
  m->set_uid("uid-1");
  return r;
}

runtime::v1::NamespaceOption* Ns(runtime::v1::RunPodSandboxRequest* r) {
  return r->mutable_config()->mutable_linux()->mutable_security_context()->mutable_namespace_options();
}

// What kubelet sends for hostUsers: false.
runtime::v1::RunPodSandboxRequest PodUserns(uint32_t host = 65536, uint32_t length = 65536) {
  runtime::v1::RunPodSandboxRequest r = Pod();
  runtime::v1::UserNamespace* u = Ns(&r)->mutable_userns_options();
  u->set_mode(runtime::v1::POD);
  AddMap(u->mutable_uids(), host, 0, length);
  AddMap(u->mutable_gids(), host, 0, length);
  return r;
}

void ExpectRefused(const runtime::v1::RunPodSandboxRequest& r, const std::string& what) {
  absl::StatusOr<SandboxConfig> c = FromProto(r);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << what;
  EXPECT_THAT(c.status().message(), HasSubstr(what));
}

TEST(UsernsConvertTest, PodModeCarriesTheMaps) {
  absl::StatusOr<SandboxConfig> c = FromProto(PodUserns());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->userns.mode, NamespaceMode::kPod);
  EXPECT_THAT(c->userns.uids, ElementsAre(IdMapping{65536, 0, 65536}));
  EXPECT_THAT(c->userns.gids, ElementsAre(IdMapping{65536, 0, 65536}));
  // Other single ranges are fine too (critest uses 1000 + 100000).
  c = FromProto(PodUserns(1000, 100000));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->userns.uids[0].length, 100000u);
}

TEST(UsernsConvertTest, AbsentOrNodeIsNoUserNamespace) {
  absl::StatusOr<SandboxConfig> c = FromProto(Pod());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->userns.mode, NamespaceMode::kNode);
  runtime::v1::RunPodSandboxRequest r = Pod();
  Ns(&r)->mutable_userns_options()->set_mode(runtime::v1::NODE);
  c = FromProto(r);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->userns.mode, NamespaceMode::kNode);
  EXPECT_TRUE(c->userns.uids.empty());
  // NODE with mappings is a contradiction.
  AddMap(Ns(&r)->mutable_userns_options()->mutable_uids(), 1000, 0, 10);
  ExpectRefused(r, "userns_options: mode NODE (no user namespace) takes no uids or gids");
}

TEST(UsernsConvertTest, RefusesMalformedMaps) {
  const std::string field = "config.linux.security_context.namespace_options.userns_options";
  runtime::v1::RunPodSandboxRequest r = Pod();
  Ns(&r)->mutable_userns_options()->set_mode(runtime::v1::POD);  // and no maps
  ExpectRefused(r, field + ".uids: mode POD needs exactly one mapping, got 0");

  r = PodUserns();
  AddMap(Ns(&r)->mutable_userns_options()->mutable_uids(), 200000, 0, 100);
  ExpectRefused(r, ".uids: mode POD needs exactly one mapping, got 2");

  r = PodUserns();
  Ns(&r)->mutable_userns_options()->mutable_gids(0)->set_container_id(1);
  ExpectRefused(r, ".gids[0].container_id is 1");

  r = PodUserns();
  Ns(&r)->mutable_userns_options()->mutable_uids(0)->set_length(0);
  ExpectRefused(r, ".uids[0].length must not be 0");

  r = PodUserns(0);
  ExpectRefused(r, ".uids[0].host_id is 0");

  r = PodUserns(4294967295u - 10, 65536);
  ExpectRefused(r, "goes past the last id");

  for (runtime::v1::NamespaceMode m : {runtime::v1::CONTAINER, runtime::v1::TARGET}) {
    r = PodUserns();
    Ns(&r)->mutable_userns_options()->set_mode(m);
    ExpectRefused(r, field + ".mode=" + runtime::v1::NamespaceMode_Name(m) + " is not supported");
  }
}

TEST(UsernsConvertTest, APodInAUserNamespaceCannotShareTheNodes) {
  runtime::v1::RunPodSandboxRequest r = PodUserns();
  Ns(&r)->set_network(runtime::v1::NODE);
  ExpectRefused(r, "cannot share the node's namespaces (network=NODE)");
  r = PodUserns();
  Ns(&r)->set_pid(runtime::v1::NODE);
  Ns(&r)->set_ipc(runtime::v1::NODE);
  ExpectRefused(r, "(pid=NODE, ipc=NODE)");
  r = PodUserns();
  r.mutable_config()->mutable_linux()->mutable_security_context()->set_privileged(true);
  ExpectRefused(r, "a privileged pod cannot run in a user namespace");
}

TEST(UsernsConvertTest, ContainerConfigCarriesItsOwnOptionsOrNone) {
  runtime::v1::ContainerConfig in;
  in.mutable_metadata()->set_name("c");
  in.mutable_image()->set_image("busybox");
  absl::StatusOr<ContainerConfig> c = FromProto(in);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->userns.has_value());  // absent: the pod's
  runtime::v1::UserNamespace* u = in.mutable_linux()
                                      ->mutable_security_context()
                                      ->mutable_namespace_options()
                                      ->mutable_userns_options();
  u->set_mode(runtime::v1::POD);
  AddMap(u->mutable_uids(), 65536, 0, 65536);
  AddMap(u->mutable_gids(), 65536, 0, 65536);
  c = FromProto(in);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->userns.has_value());
  EXPECT_EQ(c->userns->mode, NamespaceMode::kPod);
  u->clear_gids();
  c = FromProto(in);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(),
              HasSubstr("config.linux.security_context.namespace_options.userns_options.gids"));
}

TEST(UsernsConvertTest, StatusEchoesTheUserNamespace) {
  SandboxInfo info;
  info.sandbox.metadata.userns.mode = NamespaceMode::kPod;
  info.sandbox.metadata.userns.uids = {{65536, 0, 65536}};
  info.sandbox.metadata.userns.gids = {{131072, 0, 65536}};
  runtime::v1::PodSandboxStatus out;
  ToProto(info, &out);
  const runtime::v1::UserNamespace& u = out.linux().namespaces().options().userns_options();
  EXPECT_EQ(u.mode(), runtime::v1::POD);
  ASSERT_EQ(u.uids_size(), 1);
  EXPECT_EQ(u.uids(0).host_id(), 65536u);
  ASSERT_EQ(u.gids_size(), 1);
  EXPECT_EQ(u.gids(0).host_id(), 131072u);
  EXPECT_EQ(u.gids(0).length(), 65536u);
}

}  // namespace
}  // namespace podvisor::cri
