// RunPodSandboxRequest to SandboxConfig, and the requests refused on the way.
#include "cri/sandbox_convert.h"

#include <cstdint>
#include <functional>
#include <limits>

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


}  // namespace
}  // namespace podvisor::cri
