#include "common/config.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;

TEST(ConfigTest, EmptyTextGivesDefaults) {
  absl::StatusOr<Config> c = ParseConfig("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->root_dir, "/var/lib/podvisor");
  EXPECT_EQ(c->state_dir, "/run/podvisor");
  EXPECT_EQ(c->listen, "unix:///run/podvisor/podvisor.sock");
  EXPECT_EQ(c->streaming.address, "127.0.0.1");
  EXPECT_EQ(c->hypervisor.accel, "auto");
  EXPECT_EQ(c->cni.conf_dir, "/etc/cni/net.d");
}

TEST(ConfigTest, ParsesEveryKey) {
  absl::StatusOr<Config> c = ParseConfig(R"(
root_dir: /srv/pv
state_dir: /run/pv
listen: unix:///run/pv/cri.sock
log_level: debug
streaming: {address: 0.0.0.0, port: 10010}
hypervisor:
  accel: tcg
  libvirt_uri: qemu:///system
  default_vcpus: 2
  default_memory_mib: 512
  kernel: /k
  initrd: /i
  boot_timeout_seconds: 9
cni: {conf_dir: /c, bin_dirs: [/a, /b]}
registry:
  max_concurrent_downloads: 5
  hosts:
    registry.k8s.io:
      mirrors: ["http://127.0.0.1:5001"]
      insecure_skip_verify: true
      plain_http: true
      ca_file: /ca.pem
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->root_dir, "/srv/pv");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->streaming.port, 10010);
  EXPECT_EQ(c->hypervisor.accel, "tcg");
  EXPECT_EQ(c->hypervisor.default_vcpus, 2);
  EXPECT_EQ(c->hypervisor.default_memory_mib, 512);
  EXPECT_EQ(c->hypervisor.boot_timeout_seconds, 9);
  EXPECT_THAT(c->cni.bin_dirs, ::testing::ElementsAre("/a", "/b"));
  EXPECT_EQ(c->registry.max_concurrent_downloads, 5);
  const RegistryHostConfig& h = c->registry.hosts.at("registry.k8s.io");
  EXPECT_THAT(h.mirrors, ::testing::ElementsAre("http://127.0.0.1:5001"));
  EXPECT_TRUE(h.insecure_skip_verify);
  EXPECT_TRUE(h.plain_http);
  EXPECT_EQ(h.ca_file, "/ca.pem");
  EXPECT_EQ(UnixSocketPath(c->listen), "/run/pv/cri.sock");
}

struct BadCase {
  const char* yaml;
  const char* key;  // must be named in the error
};

class BadConfigTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfigTest, RejectedNamingTheKey) {
  absl::StatusOr<Config> c = ParseConfig(GetParam().yaml);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(GetParam().key));
}

INSTANTIATE_TEST_SUITE_P(
    Keys, BadConfigTest,
    ::testing::Values(BadCase{"rootdir: /x", "'rootdir'"},
                      BadCase{"hypervisor: {accel: xen}", "hypervisor.accel"},
                      BadCase{"hypervisor: {vcpus: 2}", "hypervisor.vcpus"},
                      BadCase{"hypervisor: {default_vcpus: many}", "hypervisor.default_vcpus"},
                      BadCase{"hypervisor: {default_vcpus: 0}", "hypervisor.default_vcpus"},
                      BadCase{"hypervisor: {default_memory_mib: 8}", "hypervisor.default_memory_mib"},
                      BadCase{"streaming: {port: 70000}", "streaming.port"},
                      BadCase{"streaming: {tls_cert_file: /c}", "streaming.tls_cert_file"},
                      BadCase{"log_level: loud", "log_level"},
                      BadCase{"root_dir: relative", "root_dir"},
                      BadCase{"listen: tcp://1.2.3.4:5", "listen"},
                      BadCase{"cni: {bin_dirs: /x}", "cni.bin_dirs"},
                      BadCase{"registry: {hosts: {docker.io: {mirror: [x]}}}",
                              "registry.hosts.docker.io.mirror"},
                      BadCase{"registry: {hosts: {docker.io: {mirrors: [ftp://x]}}}",
                              "registry.hosts.docker.io.mirrors"},
                      BadCase{"registry: {hosts: {q: {plain_http: maybe}}}",
                              "registry.hosts.q.plain_http"},
                      BadCase{"streaming: 5", "streaming"},
                      BadCase{"- a\n- b", "<top>"}));

TEST(ConfigTest, TemplatesAreOnByDefaultAndConfigurable) {
  absl::StatusOr<Config> d = ParseConfig("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->hypervisor.templates);
  EXPECT_TRUE(d->hypervisor.template_dir.empty());
  EXPECT_TRUE(d->hypervisor.template_memory_mib.empty());
  absl::StatusOr<Config> c = ParseConfig(R"(
hypervisor:
  templates: false
  template_dir: /dev/shm/pv
  template_memory_mib: [256, 1024]
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->hypervisor.templates);
  EXPECT_EQ(c->hypervisor.template_dir, "/dev/shm/pv");
  EXPECT_THAT(c->hypervisor.template_memory_mib, ::testing::ElementsAre(256, 1024));
  EXPECT_EQ(ConfigToJson(*c)["hypervisor"]["template_memory_mib"], nlohmann::json({256, 1024}));
  auto bad = ParseConfig("hypervisor: {template_memory_mib: [32]}");
  EXPECT_THAT(bad.status().message(), HasSubstr("hypervisor.template_memory_mib"));
  EXPECT_FALSE(ParseConfig("hypervisor: {template_memory_mib: 512}").ok());
  EXPECT_FALSE(ParseConfig("hypervisor: {templates: maybe}").ok());
}

TEST(ConfigTest, MalformedYamlIsAnError) {
  absl::StatusOr<Config> c = ParseConfig("root_dir: [unclosed");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("YAML"));
}

TEST(ConfigTest, MissingDefaultFileMeansDefaultsButNamedFileMustExist) {
  testing::TempDir dir;
  absl::StatusOr<Config> defaults = LoadConfig(dir.Join("absent.yaml"), /*must_exist=*/false);
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->root_dir, "/var/lib/podvisor");
  absl::StatusOr<Config> named = LoadConfig(dir.Join("absent.yaml"), /*must_exist=*/true);
  EXPECT_FALSE(named.ok());
}

TEST(ConfigTest, FileErrorsNameTheFile) {
  testing::TempDir dir;
  std::ofstream(dir.Join("c.yaml")) << "bogus: 1\n";
  absl::StatusOr<Config> c = LoadConfig(dir.Join("c.yaml"), true);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("c.yaml"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("'bogus'"));
}

TEST(ConfigTest, JsonShowsEffectiveValues) {
  absl::StatusOr<Config> c = ParseConfig("hypervisor: {default_memory_mib: 300}");
  ASSERT_TRUE(c.ok());
  nlohmann::json j = ConfigToJson(*c);
  EXPECT_EQ(j["hypervisor"]["default_memory_mib"], 300);
  EXPECT_EQ(j["root_dir"], "/var/lib/podvisor");
}

TEST(ConfigTest, HandlersSection) {
  absl::StatusOr<Config> d = ParseConfig("");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->handlers.host_pods, "host");
  EXPECT_EQ(d->handlers.crun, "/usr/bin/crun");
  absl::StatusOr<Config> c =
      ParseConfig("handlers: {host_pods: refuse, crun: /opt/crun, monitor: /opt/mon}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->handlers.host_pods, "refuse");
  EXPECT_EQ(c->handlers.crun, "/opt/crun");
  EXPECT_EQ(c->handlers.monitor, "/opt/mon");
  EXPECT_EQ(ConfigToJson(*c)["handlers"]["host_pods"], "refuse");
  absl::StatusOr<Config> bad = ParseConfig("handlers: {host_pods: vm}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("handlers.host_pods"));
  EXPECT_FALSE(ParseConfig("handlers: {crun: crun}\n").ok());
  EXPECT_FALSE(ParseConfig("handlers: {colour: red}\n").ok());
}

TEST(ConfigTest, MetricsAddressDefaultsToLoopbackAndEmptyDisables) {
  absl::StatusOr<Config> c = ParseConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->metrics.address, "127.0.0.1:10251");
  c = ParseConfig("metrics: {address: ''}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->metrics.address, "");
  c = ParseConfig("metrics: {address: '[::1]:9100'}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->metrics.address, "[::1]:9100");
  for (const char* bad : {"metrics: {address: localhost}", "metrics: {address: ':80'}",
                          "metrics: {address: 'h:99999'}", "metrics: {port: 1}"}) {
    absl::StatusOr<Config> b = ParseConfig(bad);
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_THAT(std::string(b.status().message()), HasSubstr("metrics.")) << bad;
  }
}

TEST(ConfigTest, DropInsMergeInLexicalOrderOverTheMainFile) {
  testing::TempDir dir;
  std::ofstream(dir.Join("config.yaml")) << "log_level: debug\n"
                                            "hypervisor: {default_vcpus: 2, accel: tcg}\n"
                                            "cni: {bin_dirs: [/a, /b]}\n";
  std::filesystem::create_directory(dir.Join("config.d"));
  std::ofstream(dir.Join("config.d/20-memory.yaml")) << "hypervisor: {default_memory_mib: 512}\n"
                                                        "log_level: error\n";
  std::ofstream(dir.Join("config.d/10-log.yaml")) << "log_level: warning\n"
                                                     "cni: {bin_dirs: [/c]}\n";
  std::ofstream(dir.Join("config.d/30-empty.yaml")) << "";
  std::ofstream(dir.Join("config.d/99-ignored.yaml.bak")) << "bogus: 1\n";
  EXPECT_THAT(ConfigDropIns(dir.Join("config.yaml")),
              ::testing::ElementsAre(dir.Join("config.d/10-log.yaml"),
                                     dir.Join("config.d/20-memory.yaml"),
                                     dir.Join("config.d/30-empty.yaml")));
  absl::StatusOr<Config> c = LoadConfig(dir.Join("config.yaml"), true);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log_level, "error");                  // 20 comes after 10
  EXPECT_EQ(c->hypervisor.default_vcpus, 2);         // mappings merge key by key
  EXPECT_EQ(c->hypervisor.accel, "tcg");
  EXPECT_EQ(c->hypervisor.default_memory_mib, 512);
  EXPECT_THAT(c->cni.bin_dirs, ::testing::ElementsAre("/c"));  // lists are replaced
}

TEST(ConfigTest, DropInsApplyWithoutAMainFile) {
  testing::TempDir dir;
  std::filesystem::create_directory(dir.Join("config.d"));
  std::ofstream(dir.Join("config.d/a.yaml")) << "metrics: {address: ''}\n";
  absl::StatusOr<Config> c = LoadConfig(dir.Join("config.yaml"), false);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->metrics.address, "");
  EXPECT_EQ(c->root_dir, "/var/lib/podvisor");
}

TEST(ConfigTest, DropInErrorsNameTheFiles) {
  testing::TempDir dir;
  std::ofstream(dir.Join("config.yaml")) << "log_level: info\n";
  std::filesystem::create_directory(dir.Join("config.d"));
  std::ofstream(dir.Join("config.d/50-bad.yaml")) << "log_level: [unclosed\n";
  absl::StatusOr<Config> c = LoadConfig(dir.Join("config.yaml"), true);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("50-bad.yaml"));
  std::ofstream(dir.Join("config.d/50-bad.yaml")) << "hypervisor: {accel: warp}\n";
  c = LoadConfig(dir.Join("config.yaml"), true);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("50-bad.yaml"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("hypervisor.accel"));
}

TEST(ConfigTest, EffectiveJsonParsesBackToTheSameConfig) {
  absl::StatusOr<Config> c = ParseConfig(
      "registry: {hosts: {docker.io: {mirrors: ['http://127.0.0.1:5000']}}}\n"
      "metrics: {address: '127.0.0.1:0'}\nstreaming: {port: 1234}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string printed = ConfigToJson(*c).dump(2);
  absl::StatusOr<Config> again = ParseConfig(printed);
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << printed;
  EXPECT_EQ(ConfigToJson(*again), ConfigToJson(*c));
  EXPECT_EQ(again->metrics.address, "127.0.0.1:0");
}

TEST(ConfigTest, StreamingLimits) {
  absl::StatusOr<Config> d = ParseConfig("");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->streaming.request_header_timeout_seconds, 10);
  EXPECT_EQ(d->streaming.max_unauthenticated_connections, 128);
  EXPECT_EQ(d->streaming.max_ports_per_request, 64);
  EXPECT_EQ(d->streaming.output_window_kib, 1024);
  absl::StatusOr<Config> c = ParseConfig(R"(
streaming:
  request_header_timeout_seconds: 3
  stream_creation_timeout_seconds: 4
  idle_timeout_seconds: 60
  max_connections: 100
  max_unauthenticated_connections: 10
  max_unauthenticated_per_source: 2
  max_sessions: 50
  max_ports_per_request: 8
  max_forwards_per_connection: 16
  max_buffered_input_kib: 128
  max_queued_control_frames: 32
  output_window_kib: 256
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->streaming.request_header_timeout_seconds, 3);
  EXPECT_EQ(c->streaming.stream_creation_timeout_seconds, 4);
  EXPECT_EQ(c->streaming.idle_timeout_seconds, 60);
  EXPECT_EQ(c->streaming.max_connections, 100);
  EXPECT_EQ(c->streaming.max_unauthenticated_connections, 10);
  EXPECT_EQ(c->streaming.max_unauthenticated_per_source, 2);
  EXPECT_EQ(c->streaming.max_sessions, 50);
  EXPECT_EQ(c->streaming.max_ports_per_request, 8);
  EXPECT_EQ(c->streaming.max_forwards_per_connection, 16);
  EXPECT_EQ(c->streaming.max_buffered_input_kib, 128);
  EXPECT_EQ(c->streaming.max_queued_control_frames, 32);
  EXPECT_EQ(c->streaming.output_window_kib, 256);
  // WebSocket port-forward numbers two channels per port in one byte: more would wrap.
  absl::StatusOr<Config> bad = ParseConfig("streaming: {max_ports_per_request: 129}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              ::testing::HasSubstr("streaming.max_ports_per_request"));
}

TEST(ConfigTest, StatsFanOut) {
  absl::StatusOr<Config> d = ParseConfig("");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->stats.max_parallel, 16);
  EXPECT_EQ(d->stats.agent_timeout_ms, 2000);
  absl::StatusOr<Config> c = ParseConfig("stats: {max_parallel: 4, agent_timeout_ms: 500}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->stats.max_parallel, 4);
  EXPECT_EQ(c->stats.agent_timeout_ms, 500);
  EXPECT_EQ(ConfigToJson(*c)["stats"]["agent_timeout_ms"], 500);
  absl::StatusOr<Config> again = ParseConfig(ConfigToJson(*c).dump());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->stats.max_parallel, 4);
  absl::StatusOr<Config> bad = ParseConfig("stats: {max_parallel: 0}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("stats.max_parallel"));
  EXPECT_FALSE(ParseConfig("stats: {agent_timeout: 5}").ok());
}

}  // namespace
}  // namespace podvisor
