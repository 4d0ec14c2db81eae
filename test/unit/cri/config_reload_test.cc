#include "cri/config_reload.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(ConfigReloadTest, SameConfigChangesNothing) {
  EXPECT_THAT(ChangedKeys(Config{}, Config{}), IsEmpty());
}

TEST(ConfigReloadTest, ChangedLeavesAreNamedAndSplitIntoLiveAndRestart) {
  Config a, b;
  b.log_level = "debug";
  b.hypervisor.default_vcpus = 2;
  b.metrics.address = "";
  b.registry.hosts["docker.io"].mirrors = {"http://127.0.0.1:5000"};
  std::vector<std::string> changed = ChangedKeys(a, b);
  EXPECT_THAT(changed, ElementsAre("hypervisor.default_vcpus", "log_level", "metrics.address",
                                   "registry.hosts.docker.io"));
  EXPECT_FALSE(IsLiveKey("hypervisor.default_vcpus"));
  EXPECT_TRUE(IsLiveKey("log_level"));
  EXPECT_TRUE(IsLiveKey("metrics.address"));
  EXPECT_TRUE(IsLiveKey("registry.hosts.docker.io"));
  EXPECT_FALSE(IsLiveKey("registry.max_concurrent_downloads"));
}

TEST(ConfigReloadTest, ApplyTakesOnlyTheLiveKeys) {
  Config running, next;
  next.log_level = "error";
  next.root_dir = "/elsewhere";
  next.registry.hosts["quay.io"].plain_http = true;
  next.registry.max_concurrent_downloads = 9;
  Config applied = ApplyLiveKeys(running, next);
  EXPECT_EQ(applied.log_level, "error");
  EXPECT_TRUE(applied.registry.hosts.at("quay.io").plain_http);
  EXPECT_EQ(applied.root_dir, "/var/lib/podvisor");
  EXPECT_EQ(applied.registry.max_concurrent_downloads, 3);
  EXPECT_THAT(ChangedKeys(applied, next), ElementsAre("registry.max_concurrent_downloads",
                                                      "root_dir"));
}

}  // namespace
}  // namespace podvisor::cri
