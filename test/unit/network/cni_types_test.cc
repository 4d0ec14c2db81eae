#include "network/cni_types.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/fs.h"
#include "test/support/temp_dir.h"

namespace podvisor::network {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kBridgeConflist[] = R"({
  "cniVersion": "1.0.0",
  "name": "podvisor",
  "disableCheck": true,
  "plugins": [
    {"type": "bridge", "bridge": "pv0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true, "other": false}},
    {"type": "loopback"}
  ]
})";

TEST(CniConfListTest, ParsesPluginsInOrderWithCapabilities) {
  absl::StatusOr<CniConfList> list = ParseCniConfList(kBridgeConflist, "x.conflist");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->name, "podvisor");
  EXPECT_EQ(list->cni_version, "1.0.0");
  EXPECT_TRUE(list->disable_check);
  ASSERT_EQ(list->plugins.size(), 3u);
  EXPECT_EQ(list->plugins[0].type, "bridge");
  EXPECT_EQ(list->plugins[0].raw["bridge"], "pv0");
  EXPECT_EQ(list->plugins[1].type, "portmap");
  EXPECT_TRUE(list->plugins[1].capabilities.at("portMappings"));
  EXPECT_FALSE(list->plugins[1].capabilities.at("other"));
  EXPECT_EQ(list->plugins[2].type, "loopback");
}

TEST(CniConfListTest, WrapsASinglePluginConf) {
  absl::StatusOr<CniConfList> list = ParseCniConfList(
      R"({"cniVersion":"0.4.0","name":"n","type":"bridge","bridge":"b"})", "a.conf", true);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->plugins.size(), 1u);
  EXPECT_EQ(list->plugins[0].type, "bridge");
  EXPECT_EQ(list->raw["plugins"][0]["bridge"], "b");
  EXPECT_EQ(list->raw["name"], "n");
}

TEST(CniConfListTest, RejectsBrokenListsNamingTheProblem) {
  struct Case {
    const char* text;
    const char* error;
  } cases[] = {
      {"{not json", "not valid JSON"},
      {R"({"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]})", "\"name\""},
      {R"({"name":"n","plugins":[{"type":"bridge"}]})", "\"cniVersion\" is missing"},
      {R"({"cniVersion":"9.9.9","name":"n","plugins":[{"type":"bridge"}]})",
       "unsupported cniVersion \"9.9.9\""},
      {R"({"cniVersion":"1.0.0","name":"n","plugins":[]})", "\"plugins\" must be a non-empty"},
      {R"({"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"x"}]})", "plugins[0]: \"type\""},
      {R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},{"type":"b","capabilities":3}]})",
       "plugins[1]: \"capabilities\""},
  };
  for (const auto& c : cases) {
    absl::StatusOr<CniConfList> list = ParseCniConfList(c.text, "/etc/cni/net.d/x.conflist");
    ASSERT_FALSE(list.ok()) << c.text;
    EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(list.status().message()), HasSubstr(c.error));
    EXPECT_THAT(std::string(list.status().message()), HasSubstr("/etc/cni/net.d/x.conflist"));
  }
}

TEST(CniConfListTest, LoadPicksFirstValidFileInLexicalOrder) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Join("05-broken.conflist"), "{").ok());
  ASSERT_TRUE(WriteFileAtomic(dir.Join("10-b.conflist"),
                              R"({"cniVersion":"1.0.0","name":"b","plugins":[{"type":"x"}]})")
                  .ok());
  ASSERT_TRUE(
      WriteFileAtomic(dir.Join("20-a.conf"), R"({"cniVersion":"1.0.0","name":"a","type":"x"})")
          .ok());
  ASSERT_TRUE(WriteFileAtomic(dir.Join("00-ignored.txt"), "{}").ok());
  absl::StatusOr<CniConfList> list = LoadCniNetwork(dir.path());
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->name, "b");
  EXPECT_EQ(list->source, dir.Join("10-b.conflist"));
}

TEST(CniConfListTest, LoadWithoutConfigIsNotFoundSayingWhy) {
  testing::TempDir dir;
  absl::StatusOr<CniConfList> list = LoadCniNetwork(dir.path());
  EXPECT_EQ(list.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(list.status().message()), HasSubstr("no .conflist/.conf/.json file in"));

  ASSERT_TRUE(WriteFileAtomic(dir.Join("a.conflist"), "[]").ok());
  list = LoadCniNetwork(dir.path());
  EXPECT_EQ(list.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(list.status().message()), HasSubstr("a.conflist: not a JSON object"));

  list = LoadCniNetwork(dir.Join("missing"));
  EXPECT_EQ(list.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(list.status().message()), HasSubstr("cannot read"));
}

// What the bridge plugin prints with cniVersion 0.4.0.
constexpr char kResult040[] = R"({
  "cniVersion": "0.4.0",
  "interfaces": [
    {"name": "pv0", "mac": "6a:2b:00:00:00:01"},
    {"name": "veth1234", "mac": "6a:2b:00:00:00:02"},
    {"name": "eth0", "mac": "6a:2b:00:00:00:03", "sandbox": "/run/podvisor/netns/abc"}
  ],
  "ips": [{"version": "4", "interface": 2, "address": "10.88.0.7/16", "gateway": "10.88.0.1"}],
  "routes": [{"dst": "0.0.0.0/0"}],
  "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.local"], "options": ["ndots:5"]}
})";

TEST(CniResultTest, Parses040) {
  absl::StatusOr<CniResult> r = ParseCniResult(kResult040);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cni_version, "0.4.0");
  ASSERT_EQ(r->interfaces.size(), 3u);
  EXPECT_EQ(r->interfaces[2].sandbox, "/run/podvisor/netns/abc");
  ASSERT_EQ(r->ips.size(), 1u);
  EXPECT_EQ(r->ips[0].address, "10.88.0.7/16");
  EXPECT_EQ(r->ips[0].gateway, "10.88.0.1");
  EXPECT_EQ(r->ips[0].interface, 2);
  EXPECT_EQ(r->ips[0].version, 4);
  ASSERT_EQ(r->routes.size(), 1u);
  EXPECT_EQ(r->routes[0].dst, "0.0.0.0/0");
  EXPECT_EQ(r->routes[0].gw, "");
  EXPECT_THAT(r->dns.nameservers, ElementsAre("10.96.0.10"));
  EXPECT_THAT(r->dns.search, ElementsAre("svc.local"));
  EXPECT_THAT(r->dns.options, ElementsAre("ndots:5"));
}

TEST(CniResultTest, Parses100WithDualStackAndMtu) {
  absl::StatusOr<CniResult> r = ParseCniResult(R"({
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1450, "sandbox": "/ns"}],
    "ips": [{"interface": 0, "address": "fd00:88::5/64", "gateway": "fd00:88::1"},
            {"interface": 0, "address": "10.88.0.5/24"}],
    "routes": [{"dst": "::/0", "gw": "fd00:88::1"}, {"dst": "10.0.0.0/8", "gw": "10.88.0.1"}]
  })");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->interfaces[0].mtu, 1450);
  ASSERT_EQ(r->ips.size(), 2u);
  EXPECT_EQ(r->ips[0].version, 6);
  EXPECT_EQ(r->ips[1].version, 4);
  EXPECT_EQ(r->ips[1].gateway, "");
  ASSERT_EQ(r->routes.size(), 2u);
  EXPECT_EQ(r->routes[1].gw, "10.88.0.1");
}

TEST(CniResultTest, ParsesLegacy020) {
  absl::StatusOr<CniResult> r = ParseCniResult(R"({
    "cniVersion": "0.2.0",
    "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
    "dns": {}
  })");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->ips.size(), 1u);
  EXPECT_EQ(r->ips[0].address, "10.1.0.2/24");
  EXPECT_EQ(r->ips[0].gateway, "10.1.0.1");
  ASSERT_EQ(r->routes.size(), 1u);
}

TEST(CniResultTest, RejectsMalformedResults) {
  EXPECT_FALSE(ParseCniResult("").ok());
  EXPECT_FALSE(ParseCniResult("[1]").ok());
  EXPECT_FALSE(ParseCniResult(R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]})").ok());
  EXPECT_FALSE(
      ParseCniResult(R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":3}]})")
          .ok());
  EXPECT_FALSE(ParseCniResult(R"({"cniVersion":"1.0.0","routes":[{"gw":"1.2.3.4"}]})").ok());
}

TEST(CniErrorTest, ParsesCodeMessageAndDetails) {
  absl::StatusOr<CniError> e = ParseCniError(
      R"({"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no subnet"})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->code, 7);
  EXPECT_EQ(e->msg, "invalid config");
  EXPECT_EQ(e->details, "no subnet");
  EXPECT_FALSE(ParseCniError("oops").ok());
  EXPECT_FALSE(ParseCniError(R"({"msg":"no code"})").ok());
}

TEST(CniErrorTest, MapsCodesToStatus) {
  absl::Status s = CniErrorToStatus({7, "invalid config", "no subnet"}, "CNI ADD plugin bridge");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "CNI ADD plugin bridge: CNI error 7: invalid config (no subnet)");
  EXPECT_EQ(CniErrorToStatus({11, "busy", ""}, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CniErrorToStatus({3, "gone", ""}, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CniErrorToStatus({100, "plugin", ""}, "x").code(), absl::StatusCode::kInternal);
}

TEST(CniVersionTest, ComparesAndKnowsSupportedVersions) {
  EXPECT_LT(CompareCniVersions("0.4.0", "1.0.0"), 0);
  EXPECT_LT(CompareCniVersions("0.3.0", "0.3.1"), 0);
  EXPECT_EQ(CompareCniVersions("1.0.0", "1.0.0"), 0);
  EXPECT_GT(CompareCniVersions("1.1.0", "0.4.0"), 0);
  EXPECT_TRUE(IsSupportedCniVersion("0.3.1"));
  EXPECT_FALSE(IsSupportedCniVersion("2.0.0"));
}

}  // namespace
}  // namespace podvisor::network

namespace podvisor::network {
namespace {

TEST(DeployedConflistTest, DefaultNetworkParsesWithTheExpectedChain) {
  absl::StatusOr<std::string> text =
      ReadFile(std::string(PODVISOR_SOURCE_DIR) + "/deploy/cni/10-podvisor.conflist");
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<CniConfList> list = ParseCniConfList(*text, "10-podvisor.conflist");
  ASSERT_TRUE(list.ok()) << list.status();
  std::vector<std::string> types;
  for (const auto& p : list->plugins) types.push_back(p.type);
  EXPECT_THAT(types, ::testing::ElementsAre("bridge", "portmap", "loopback"));
  EXPECT_EQ(list->plugins[0].raw["ipam"]["type"], "host-local");
  EXPECT_TRUE(list->plugins[1].capabilities.at("portMappings"));
}

}  // namespace
}  // namespace podvisor::network
