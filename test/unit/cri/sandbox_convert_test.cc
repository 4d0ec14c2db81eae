#include "cri/sandbox_convert.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

runtime::v1::RunPodSandboxRequest Request() {
  runtime::v1::RunPodSandboxRequest req;
  auto* meta = req.mutable_config()->mutable_metadata();
  meta->set_name("p");
  meta->set_namespace_("ns");
  meta->set_uid("u");
  return req;
}

TEST(SandboxConvertTest, PodResourcesPlusOverheadAndTheCgroupParent) {
  auto req = Request();
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
  auto req = Request();
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
