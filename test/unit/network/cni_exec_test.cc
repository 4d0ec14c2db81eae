#include "network/cni_exec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "test/support/temp_dir.h"

namespace podvisor::network {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// A conflist of fake plugins (test/fakes/fake_cni_plugin.cc) that record their calls.
class CniExecTest : public ::testing::Test {
 protected:
  CniConfList List(const std::string& version, std::vector<json> plugins) {
    for (auto& p : plugins) {
      p["type"] = "pv-fake-cni";
      p["recordFile"] = record_;
    }
    json doc = {{"cniVersion", version}, {"name", "testnet"}, {"plugins", plugins}};
    absl::StatusOr<CniConfList> list = ParseCniConfList(doc.dump(), "test.conflist");
    EXPECT_TRUE(list.ok()) << list.status();
    return *list;
  }

  std::vector<json> Records() {
    std::vector<json> out;
    absl::StatusOr<std::string> text = ReadFile(record_);
    if (!text.ok()) return out;
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      out.push_back(json::parse(line));
    }
    return out;
  }

  CniRuntimeConf Rt() {
    CniRuntimeConf rt;
    rt.container_id = "sandbox1";
    rt.netns = "/run/test/netns/sandbox1";
    rt.ifname = "eth0";
    rt.args = {{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}};
    rt.capability_args = {{"portMappings", json::array({{{"hostPort", 8080}}})},
                          {"dns", {{"servers", {"10.0.0.10"}}}}};
    return rt;
  }

  testing::TempDir dir_;
  std::string record_ = dir_.Join("calls.jsonl");
  CniExec exec_{{dir_.Join("empty-bin"), PV_FAKE_CNI_DIR}};
};

const json kResult = {{"cniVersion", "1.0.0"},
                      {"interfaces", {{{"name", "eth0"}, {"sandbox", "/ns"}}}},
                      {"ips", {{{"address", "10.9.0.2/24"}, {"interface", 0}}}}};

TEST_F(CniExecTest, AddPassesEnvironmentAndChainsPrevResult) {
  CniConfList list = List("1.0.0", {{{"result", kResult}, {"first", true}},
                                    {{"capabilities", {{"portMappings", true}}}},
                                    {{"capabilities", {{"dns", true}, {"bandwidth", true}}}}});
  absl::StatusOr<std::string> out = exec_.AddNetworkList(list, Rt());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(json::parse(*out), kResult);

  std::vector<json> calls = Records();
  ASSERT_EQ(calls.size(), 3u);
  for (const auto& c : calls) {
    EXPECT_EQ(c["command"], "ADD");
    EXPECT_EQ(c["containerId"], "sandbox1");
    EXPECT_EQ(c["netns"], "/run/test/netns/sandbox1");
    EXPECT_EQ(c["ifname"], "eth0");
    EXPECT_EQ(c["args"], "IgnoreUnknown=1;K8S_POD_NAME=web");
    EXPECT_EQ(c["path"], dir_.Join("empty-bin") + ":" + PV_FAKE_CNI_DIR);
    EXPECT_EQ(c["stdin"]["name"], "testnet");
    EXPECT_EQ(c["stdin"]["cniVersion"], "1.0.0");
  }
  EXPECT_FALSE(calls[0]["stdin"].contains("prevResult"));
  EXPECT_TRUE(calls[0]["stdin"]["first"]);
  EXPECT_EQ(calls[1]["stdin"]["prevResult"], kResult);
  EXPECT_EQ(calls[2]["stdin"]["prevResult"], kResult);
  // runtimeConfig carries only the capabilities a plugin declares and the runtime supplies.
  EXPECT_FALSE(calls[0]["stdin"].contains("runtimeConfig"));
  EXPECT_EQ(calls[1]["stdin"]["runtimeConfig"],
            json({{"portMappings", json::array({{{"hostPort", 8080}}})}}));
  EXPECT_EQ(calls[2]["stdin"]["runtimeConfig"], json({{"dns", {{"servers", {"10.0.0.10"}}}}}));
}

TEST_F(CniExecTest, DelRunsInReverseWithCachedResult) {
  CniConfList list = List("1.0.0", {{{"n", 1}}, {{"n", 2}}});
  ASSERT_TRUE(exec_.DelNetworkList(list, Rt(), kResult.dump()).ok());
  std::vector<json> calls = Records();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0]["command"], "DEL");
  EXPECT_EQ(calls[0]["stdin"]["n"], 2);
  EXPECT_EQ(calls[1]["stdin"]["n"], 1);
  EXPECT_EQ(calls[0]["stdin"]["prevResult"], kResult);
}

TEST_F(CniExecTest, DelBefore040HasNoPrevResultAndGoesOnPastFailures) {
  CniConfList list = List("0.3.1", {{{"n", 1}}, {{"n", 2}, {"failOn", "DEL"}, {"failMsg", "x"}}});
  absl::Status s = exec_.DelNetworkList(list, Rt(), kResult.dump());
  EXPECT_THAT(std::string(s.message()), HasSubstr("CNI DEL plugin pv-fake-cni: CNI error 100: x"));
  std::vector<json> calls = Records();
  ASSERT_EQ(calls.size(), 2u);  // the first plugin still ran
  EXPECT_FALSE(calls[0]["stdin"].contains("prevResult"));
  EXPECT_FALSE(calls[1]["stdin"].contains("prevResult"));
}

TEST_F(CniExecTest, CheckIsSkippedWhenDisabledOrTooOld) {
  CniConfList list = List("0.3.1", {{}});
  EXPECT_TRUE(exec_.CheckNetworkList(list, Rt(), kResult.dump()).ok());
  list = List("1.0.0", {{}});
  list.disable_check = true;
  EXPECT_TRUE(exec_.CheckNetworkList(list, Rt(), kResult.dump()).ok());
  EXPECT_TRUE(Records().empty());
  list.disable_check = false;
  EXPECT_TRUE(exec_.CheckNetworkList(list, Rt(), kResult.dump()).ok());
  ASSERT_EQ(Records().size(), 1u);
  EXPECT_EQ(Records()[0]["command"], "CHECK");
  EXPECT_EQ(Records()[0]["stdin"]["prevResult"], kResult);
}

TEST_F(CniExecTest, ErrorJsonBecomesStatusWithCodeAndMessage) {
  CniConfList list = List("1.0.0", {{{"result", kResult}},
                                    {{"failOn", "ADD"},
                                     {"failCode", 11},
                                     {"failMsg", "try again"},
                                     {"failDetails", "lock held"}},
                                    {}});
  absl::StatusOr<std::string> out = exec_.AddNetworkList(list, Rt());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(out.status().message(),
            "CNI ADD plugin pv-fake-cni: CNI error 11: try again (lock held)");
  EXPECT_EQ(Records().size(), 2u);  // the chain stopped at the failure
}

TEST_F(CniExecTest, CrashWithoutJsonReportsStderr) {
  CniConfList list = List("1.0.0", {{{"crashOn", "ADD"}}});
  absl::StatusOr<std::string> out = exec_.AddNetworkList(list, Rt());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("exited with 2: fake plugin crashed on ADD"));
}

TEST_F(CniExecTest, MissingPluginIsFailedPreconditionNamingIt) {
  CniConfList list = List("1.0.0", {{}});
  list.plugins[0].type = "no-such-plugin";
  absl::StatusOr<std::string> out = exec_.AddNetworkList(list, Rt());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("no executable \"no-such-plugin\""));
}

}  // namespace
}  // namespace podvisor::network
