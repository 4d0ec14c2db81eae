// RunPodSandboxRequest to SandboxConfig, and the requests refused on the way.
#include "cri/sandbox_convert.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

runtime::v1::RunPodSandboxRequest MinimalRequest() {
  runtime::v1::RunPodSandboxRequest r;
  auto* m = r.mutable_config()->mutable_metadata();
  m->set_name("web");
  m->set_namespace_("default");
  m->set_uid("uid-1");
  m->set_attempt(1);
  return r;
}

TEST(SandboxConfigFromProtoTest, CarriesTheRequest) {
  runtime::v1::RunPodSandboxRequest r = MinimalRequest();
  runtime::v1::PodSandboxConfig* c = r.mutable_config();
  c->set_hostname("web-0");
  c->set_log_directory("/var/log/pods/x");
  c->mutable_dns_config()->add_servers("10.0.0.10");
  c->mutable_dns_config()->add_searches("svc.cluster.local");
  auto* pm = c->add_port_mappings();
  pm->set_protocol(runtime::v1::TCP);
  pm->set_container_port(80);
  pm->set_host_port(8080);
  (*c->mutable_labels())["app"] = "web";
  r.set_runtime_handler("podvisor");
  absl::StatusOr<SandboxConfig> out = FromProto(r);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->pod_name, "web");
  EXPECT_EQ(out->pod_namespace, "default");
  EXPECT_EQ(out->pod_uid, "uid-1");
  EXPECT_EQ(out->attempt, 1u);
  EXPECT_EQ(out->hostname, "web-0");
  EXPECT_EQ(out->log_directory, "/var/log/pods/x");
  ASSERT_TRUE(out->dns.has_value());
  EXPECT_THAT(out->dns->servers, ElementsAre("10.0.0.10"));
  ASSERT_EQ(out->port_mappings.size(), 1u);
  EXPECT_EQ(out->port_mappings[0].host_port, 8080);
  EXPECT_EQ(out->labels.at("app"), "web");
  EXPECT_EQ(out->runtime_handler, "podvisor");
}

TEST(SandboxConfigFromProtoTest, RefusesMalformedRequests) {
  struct Case {
    const char* name;
    std::function<void(runtime::v1::RunPodSandboxRequest&)> change;
    const char* message;
  };
  const Case cases[] = {
      {"no config", [](auto& r) { r.clear_config(); }, "config is required"},
      {"no name", [](auto& r) { r.mutable_config()->mutable_metadata()->clear_name(); },
       "metadata.name"},
      {"no namespace", [](auto& r) { r.mutable_config()->mutable_metadata()->clear_namespace_(); },
       "metadata.namespace"},
      {"no uid", [](auto& r) { r.mutable_config()->mutable_metadata()->clear_uid(); },
       "metadata.uid"},
      {"long hostname", [](auto& r) { r.mutable_config()->set_hostname(std::string(64, 'h')); },
       "longer than 63"},
      {"port out of range",
       [](auto& r) {
         auto* pm = r.mutable_config()->add_port_mappings();
         pm->set_container_port(70000);
       },
       "port out of range"},
      {"unknown supplemental groups policy",
       [](auto& r) {
         r.mutable_config()
             ->mutable_linux()
             ->mutable_security_context()
             ->set_supplemental_groups_policy(
                 static_cast<runtime::v1::SupplementalGroupsPolicy>(2));
       },
       "config.linux.security_context.supplemental_groups_policy: unknown value 2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    runtime::v1::RunPodSandboxRequest r = MinimalRequest();
    c.change(r);
    absl::StatusOr<SandboxConfig> out = FromProto(r);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(out.status().message(), HasSubstr(c.message));
  }
}

TEST(SandboxConfigFromProtoTest, AcceptsBothSupplementalGroupsPolicies) {
  for (auto policy : {runtime::v1::Merge, runtime::v1::Strict}) {
    runtime::v1::RunPodSandboxRequest r = MinimalRequest();
    r.mutable_config()->mutable_linux()->mutable_security_context()->set_supplemental_groups_policy(
        policy);
    EXPECT_TRUE(FromProto(r).ok()) << policy;
  }
}

TEST(SandboxStateConvertTest, RoundTrips) {
  for (SandboxState s : {SandboxState::kReady, SandboxState::kNotReady}) {
    EXPECT_EQ(FromProto(ToProto(s)), s);
  }
}

runtime::v1::RunPodSandboxRequest ResourcesRequest() {
  runtime::v1::RunPodSandboxRequest req;
  auto* meta = req.mutable_config()->mutable_metadata();
  meta->set_name("p");
  meta->set_namespace_("ns");
  meta->set_uid("u");
  return req;
}

TEST(SandboxConvertTest, PodResourcesPlusOverheadAndTheCgroupParent) {
  auto req = ResourcesRequest();
  auto* lx = req.mutable_config()->mutable_linux();
  lx->set_cgroup_parent("/kubepods/burstable/podu");
  lx->mutable_resources()->set_memory_limit_in_bytes(256 << 20);
  lx->mutable_resources()->set_cpu_quota(50000);
  lx->mutable_resources()->set_cpu_period(100000);
  lx->mutable_overhead()->set_memory_limit_in_bytes(64 << 20);
  lx->mutable_overhead()->set_cpu_quota(10000);
  absl::StatusOr<SandboxConfig> config = FromProto(req);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cgroup_parent, "/kubepods/burstable/podu");
  EXPECT_EQ(config->memory_limit_bytes, 320 << 20);
  EXPECT_EQ(config->cpu_quota, 60000);
  EXPECT_EQ(config->cpu_period, 100000);
}

TEST(SandboxConvertTest, OverflowingOrNegativeResourcesAreRefused) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto req = ResourcesRequest();
  auto* lx = req.mutable_config()->mutable_linux();
  lx->mutable_resources()->set_memory_limit_in_bytes(kMax);
  lx->mutable_overhead()->set_memory_limit_in_bytes(1 << 20);
  absl::StatusOr<SandboxConfig> config = FromProto(req);
  ASSERT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find("overflows"), std::string::npos);

  lx->mutable_resources()->set_memory_limit_in_bytes(1 << 30);
  lx->mutable_resources()->set_cpu_quota(kMax);
  lx->mutable_overhead()->set_cpu_quota(kMax);
  EXPECT_EQ(FromProto(req).status().code(), absl::StatusCode::kInvalidArgument);

  lx->mutable_resources()->set_cpu_quota(-5);
  lx->mutable_overhead()->set_cpu_quota(0);
  EXPECT_EQ(FromProto(req).status().code(), absl::StatusCode::kInvalidArgument);
}

runtime::v1::RunPodSandboxRequest UsernsRequest(runtime::v1::NamespaceMode mode,
                                                std::vector<runtime::v1::IDMapping> uids,
                                                std::vector<runtime::v1::IDMapping> gids) {
  runtime::v1::RunPodSandboxRequest r = MinimalRequest();
  runtime::v1::UserNamespace* u = r.mutable_config()
                                      ->mutable_linux()
                                      ->mutable_security_context()
                                      ->mutable_namespace_options()
                                      ->mutable_userns_options();
  u->set_mode(mode);
  for (const auto& m : uids) *u->add_uids() = m;
  for (const auto& m : gids) *u->add_gids() = m;
  return r;
}

runtime::v1::IDMapping Range(uint32_t container, uint32_t host, uint32_t length) {
  runtime::v1::IDMapping m;
  m.set_container_id(container);
  m.set_host_id(host);
  m.set_length(length);
  return m;
}

TEST(SandboxConvertTest, UserNamespaceModePodCarriesItsRanges) {
  absl::StatusOr<SandboxConfig> c =
      FromProto(UsernsRequest(runtime::v1::POD, {Range(0, 1000, 100000)}, {Range(0, 2000, 65536)}));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->user_namespace.has_value());
  EXPECT_EQ(c->user_namespace->uids, (IdRange{0, 1000, 100000}));
  EXPECT_EQ(c->user_namespace->gids, (IdRange{0, 2000, 65536}));
  // NODE, or nothing said: the node's.
  c = FromProto(UsernsRequest(runtime::v1::NODE, {}, {}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->user_namespace.has_value());
  c = FromProto(MinimalRequest());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->user_namespace.has_value());

  // The status reports what the pod has.
  SandboxInfo info;
  info.sandbox.metadata.user_namespace = PodUserNamespace{{0, 1000, 100000}, {0, 2000, 65536}};
  runtime::v1::PodSandboxStatus st;
  ToProto(info, &st);
  const runtime::v1::UserNamespace& u = st.linux().namespaces().options().userns_options();
  EXPECT_EQ(u.mode(), runtime::v1::POD);
  ASSERT_EQ(u.uids_size(), 1);
  EXPECT_EQ(u.uids(0).host_id(), 1000u);
  EXPECT_EQ(u.gids(0).length(), 65536u);
  info.sandbox.metadata.user_namespace.reset();
  st.Clear();
  ToProto(info, &st);
  EXPECT_EQ(st.linux().namespaces().options().userns_options().mode(), runtime::v1::NODE);
}

TEST(SandboxConvertTest, UserNamespaceRequestsNoRuntimeCanHonourAreRefused) {
  const runtime::v1::IDMapping ok = Range(0, 1000, 100000);
  struct Case {
    const char* what;
    runtime::v1::RunPodSandboxRequest request;
    const char* message;
  } cases[] = {
      {"two ranges", UsernsRequest(runtime::v1::POD, {ok, Range(0, 2000, 100000)}, {ok, ok}),
       "exactly one uid and one gid"},
      {"no gid range", UsernsRequest(runtime::v1::POD, {ok}, {}), "exactly one uid and one gid"},
      {"container id 0 unmapped", UsernsRequest(runtime::v1::POD, {Range(1, 1000, 100000)}, {ok}),
       "container id 0"},
      {"empty range", UsernsRequest(runtime::v1::POD, {ok}, {Range(0, 1000, 0)}), "length 0"},
      {"past 2^32-1", UsernsRequest(runtime::v1::POD, {Range(0, 0xffff0000u, 0x10000u)}, {ok}),
       "2^32-1"},
      {"CONTAINER", UsernsRequest(runtime::v1::CONTAINER, {}, {}), "CONTAINER is not supported"},
      {"TARGET", UsernsRequest(runtime::v1::TARGET, {}, {}), "TARGET is not supported"},
      {"NODE with ranges", UsernsRequest(runtime::v1::NODE, {ok}, {ok}), "takes no uid"},
  };
  for (Case& c : cases) {
    absl::StatusOr<SandboxConfig> out = FromProto(c.request);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(out.status().message(), HasSubstr(c.message)) << c.what;
  }
  // Its own user namespace and the node's network (or PID, IPC): contradictory.
  runtime::v1::RunPodSandboxRequest host_net = UsernsRequest(runtime::v1::POD, {ok}, {ok});
  host_net.mutable_config()
      ->mutable_linux()
      ->mutable_security_context()
      ->mutable_namespace_options()
      ->set_network(runtime::v1::NODE);
  absl::StatusOr<SandboxConfig> out = FromProto(host_net);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.status().message(), HasSubstr("cannot share the node's network"));
}

}  // namespace
}  // namespace podvisor::cri
