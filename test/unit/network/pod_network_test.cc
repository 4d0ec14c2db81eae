#include "network/pod_network.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/fs.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;

TEST(ValidatePodNetworkModeTest, RejectsHostNetworkNamingTheField) {
  EXPECT_TRUE(ValidatePodNetworkMode(PodNetworkMode::kPod).ok());
  absl::Status s = ValidatePodNetworkMode(PodNetworkMode::kNode);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("linux.security_context.namespace_options.network=NODE"));
  EXPECT_FALSE(ValidatePodNetworkMode(PodNetworkMode::kTarget).ok());
}

TEST(PodNetworkReadinessTest, NotReadyWithReasonUntilAConfigAndItsPluginsExist) {
  testing::TempDir dir;
  PodNetworkOptions options;
  options.cni.conf_dir = dir.Join("net.d");
  options.cni.bin_dirs = {PV_FAKE_CNI_DIR};
  options.netns_dir = dir.Join("netns");
  options.cache_dir = dir.Join("cache");
  auto manager = NewCniPodNetworkManager(options);
  ASSERT_TRUE(manager.ok()) << manager.status();

  PodNetworkReadiness r = (*manager)->Readiness();
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "NetworkPluginNotReady");
  EXPECT_THAT(r.message, HasSubstr(options.cni.conf_dir));

  ASSERT_TRUE(MakeDirs(options.cni.conf_dir).ok());
  ASSERT_TRUE(WriteFileAtomic(options.cni.conf_dir + "/10-x.conflist",
                              R"({"cniVersion":"1.0.0","name":"x","plugins":[
                                  {"type":"pv-fake-cni"},{"type":"absent-plugin"}]})")
                  .ok());
  r = (*manager)->Readiness();
  EXPECT_FALSE(r.ready);
  EXPECT_THAT(r.message, HasSubstr("absent-plugin"));

  ASSERT_TRUE(WriteFileAtomic(options.cni.conf_dir + "/10-x.conflist",
                              R"({"cniVersion":"1.0.0","name":"x","plugins":[
                                  {"type":"pv-fake-cni"}]})")
                  .ok());
  r = (*manager)->Readiness();
  EXPECT_TRUE(r.ready) << r.message;
}

TEST(PodNetworkManagerTest, TeardownAndRemoveOfUnknownPodSucceed) {
  testing::TempDir dir;
  PodNetworkOptions options;
  options.cni.conf_dir = dir.Join("net.d");
  options.netns_dir = dir.Join("netns");
  options.cache_dir = dir.Join("cache");
  auto manager = NewCniPodNetworkManager(options);
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_TRUE((*manager)->Teardown("nope").ok());
  EXPECT_TRUE((*manager)->Remove("nope").ok());
  EXPECT_EQ((*manager)->Get("nope").status().code(), absl::StatusCode::kNotFound);
  PodNetworkRequest request;
  request.sandbox_id = "../x";
  EXPECT_EQ((*manager)->Setup(request).status().code(), absl::StatusCode::kInvalidArgument);
  request.sandbox_id = "p1";
  absl::StatusOr<PodNetwork> net = (*manager)->Setup(request);
  EXPECT_EQ(net.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(net.status().message()),
              HasSubstr("set up network of pod p1: no valid CNI"));
}

TEST(PodNetworkManagerTest, TeardownWithACorruptCacheRunsDelWithTheCurrentConfig) {
  testing::TempDir dir;
  PodNetworkOptions options;
  options.cni.conf_dir = dir.Join("net.d");
  options.cni.bin_dirs = {PV_FAKE_CNI_DIR};
  options.netns_dir = dir.Join("netns");
  options.cache_dir = dir.Join("cache");
  auto manager = NewCniPodNetworkManager(options);
  ASSERT_TRUE(manager.ok()) << manager.status();
  ASSERT_TRUE(MakeDirs(options.cni.conf_dir).ok());
  const std::string record = dir.Join("calls.jsonl");
  ASSERT_TRUE(WriteFileAtomic(options.cni.conf_dir + "/10-x.conflist",
                              R"({"cniVersion":"1.0.0","name":"x","plugins":[
                                  {"type":"pv-fake-cni","recordFile":")" +
                                  record + R"("}]})")
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(options.cache_dir + "/p1.json", "{\"kind\": 3}").ok());
  absl::Status s = (*manager)->Teardown("p1");
  EXPECT_TRUE(s.ok()) << s;
  absl::StatusOr<std::string> calls = ReadFile(record);
  ASSERT_TRUE(calls.ok()) << calls.status();
  EXPECT_THAT(*calls, HasSubstr("\"command\":\"DEL\""));
  EXPECT_THAT(*calls, HasSubstr("\"containerId\":\"p1\""));
  EXPECT_TRUE((*manager)->Teardown("p1").ok());  // now recorded as torn down
  EXPECT_TRUE((*manager)->Remove("p1").ok());
  EXPECT_TRUE((*manager)->ListSandboxIds().empty());
}

TEST(PodNetworkTest, PrimaryAndAdditionalIps) {
  PodNetwork net;
  EXPECT_EQ(net.PrimaryIp(), "");
  net.ips = {{"10.0.0.2", 24, 4, ""}, {"fd00::2", 64, 6, ""}};
  EXPECT_EQ(net.PrimaryIp(), "10.0.0.2");
  EXPECT_EQ(net.AdditionalIps(), std::vector<std::string>{"fd00::2"});
}

}  // namespace
}  // namespace podvisor
