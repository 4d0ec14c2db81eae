// runtime.v1 container messages to domain types and back, and the requests refused on the way.
#include "cri/container_convert.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// Older kubelets send the deprecated seccomp_profile_path.
void SetLegacySeccompPath(runtime::v1::LinuxContainerSecurityContext& sc, const std::string& p) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  sc.set_seccomp_profile_path(p);
#pragma GCC diagnostic pop
}

runtime::v1::ContainerConfig MinimalConfig() {
  runtime::v1::ContainerConfig c;
  c.mutable_metadata()->set_name("app");
  c.mutable_metadata()->set_attempt(2);
  c.mutable_image()->set_image("busybox:latest");
  return c;
}

TEST(ContainerConfigFromProtoTest, RecursiveReadOnlyNeedsReadOnlyAndPrivatePropagation) {
  runtime::v1::ContainerConfig in = MinimalConfig();
  auto* m = in.add_mounts();
  m->set_container_path("/data");
  m->set_host_path("/srv/data");
  m->set_recursive_read_only(true);
  absl::StatusOr<ContainerConfig> c = FromProto(in);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("recursive_read_only is set but readonly is not"));
  m->set_readonly(true);
  m->set_propagation(runtime::v1::PROPAGATION_HOST_TO_CONTAINER);
  c = FromProto(in);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("private mount propagation"));
  m->set_propagation(runtime::v1::PROPAGATION_PRIVATE);
  c = FromProto(in);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->mounts[0].readonly);
  EXPECT_TRUE(c->mounts[0].recursive_read_only);
}

TEST(ContainerConfigFromProtoTest, CarriesTheRequest) {
  runtime::v1::ContainerConfig in = MinimalConfig();
  in.add_command("/bin/sh");
  in.add_args("-c");
  in.add_args("echo hi");
  in.set_working_dir("/srv");
  auto* env = in.add_envs();
  env->set_key("FOO");
  env->set_value("bar");
  auto* m = in.add_mounts();
  m->set_container_path("/data");
  m->set_host_path("/srv/data");
  m->set_readonly(true);
  m->set_propagation(runtime::v1::PROPAGATION_HOST_TO_CONTAINER);
  (*in.mutable_labels())["tier"] = "front";
  in.set_log_path("app/0.log");
  in.set_tty(true);
  auto* sc = in.mutable_linux()->mutable_security_context();
  sc->mutable_run_as_user()->set_value(1000);
  sc->mutable_run_as_group()->set_value(3000);
  sc->add_supplemental_groups(5);
  sc->mutable_capabilities()->add_add_capabilities("NET_ADMIN");
  sc->mutable_namespace_options()->set_pid(runtime::v1::CONTAINER);
  in.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(64 << 20);

  absl::StatusOr<ContainerConfig> c = FromProto(in);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "app");
  EXPECT_EQ(c->attempt, 2u);
  EXPECT_EQ(c->image, "busybox:latest");
  EXPECT_THAT(c->command, ElementsAre("/bin/sh"));
  EXPECT_THAT(c->args, ElementsAre("-c", "echo hi"));
  EXPECT_EQ(c->working_dir, "/srv");
  EXPECT_THAT(c->envs, ElementsAre(Pair("FOO", "bar")));
  ASSERT_EQ(c->mounts.size(), 1u);
  EXPECT_EQ(c->mounts[0].host_path, "/srv/data");
  EXPECT_TRUE(c->mounts[0].readonly);
  EXPECT_EQ(c->mounts[0].propagation, MountPropagation::kHostToContainer);
  EXPECT_EQ(c->labels.at("tier"), "front");
  EXPECT_EQ(c->log_path, "app/0.log");
  EXPECT_TRUE(c->tty);
  EXPECT_EQ(c->run_as_user, std::optional<int64_t>(1000));
  EXPECT_EQ(c->run_as_group, std::optional<int64_t>(3000));
  EXPECT_THAT(c->supplemental_groups, ElementsAre(5));
  EXPECT_THAT(c->cap_add, ElementsAre("NET_ADMIN"));
  EXPECT_FALSE(c->share_pod_pid);
  EXPECT_EQ(c->resources.memory_limit_bytes, 64 << 20);
}

// pid=NODE converts (a host-handler pod honours it); CreateContainer refuses it for a pod VM.
TEST(ContainerConfigFromProtoTest, NodePidIsCarriedForTheHandlerToJudge) {
  runtime::v1::ContainerConfig in = MinimalConfig();
  absl::StatusOr<ContainerConfig> c = FromProto(in);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->node_pid);
  EXPECT_TRUE(c->share_pod_pid);
  in.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(
      runtime::v1::NODE);
  c = FromProto(in);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->node_pid);
}

TEST(ContainerConfigFromProtoTest, RefusesWhatAPodVmCannotHonour) {
  struct Case {
    const char* name;
    std::function<void(runtime::v1::ContainerConfig&)> change;
    const char* message;
  };
  const Case cases[] = {
      {"no name", [](auto& c) { c.mutable_metadata()->clear_name(); }, "metadata.name"},
      {"no image", [](auto& c) { c.mutable_image()->clear_image(); }, "image.image"},
      {"device", [](auto& c) { c.add_devices()->set_host_path("/dev/sda"); }, "host devices"},
      {"negative uid",
       [](auto& c) {
         c.mutable_linux()->mutable_security_context()->mutable_run_as_user()->set_value(-1);
       },
       "negative"},
      {"bad seccomp path",
       [](auto& c) {
         SetLegacySeccompPath(*c.mutable_linux()->mutable_security_context(), "weird");
       },
       "seccomp_profile_path"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    runtime::v1::ContainerConfig in = MinimalConfig();
    c.change(in);
    absl::StatusOr<ContainerConfig> out = FromProto(in);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(out.status().message(), HasSubstr(c.message));
  }
}

// Bidirectional propagation is the handler's to judge: the host handler honours it, CreateContainer
// refuses it for a VM pod (host_handler_e2e_test); the conversion only carries it.
TEST(ContainerConfigFromProtoTest, BidirectionalPropagationIsCarried) {
  runtime::v1::ContainerConfig in = MinimalConfig();
  auto* m = in.add_mounts();
  m->set_host_path("/h");
  m->set_container_path("/c");
  m->set_propagation(runtime::v1::PROPAGATION_BIDIRECTIONAL);
  absl::StatusOr<ContainerConfig> out = FromProto(in);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->mounts.size(), 1u);
  EXPECT_EQ(out->mounts[0].propagation, MountPropagation::kBidirectional);
}

TEST(ContainerConfigFromProtoTest, ImageVolumesAreCarriedReadOnlyAndChecked) {
  runtime::v1::ContainerConfig in = MinimalConfig();
  auto* m = in.add_mounts();
  m->set_container_path("/tools");
  m->mutable_image()->set_image("registry.example/tools:1");
  m->set_image_sub_path("usr/bin");
  absl::StatusOr<ContainerConfig> out = FromProto(in);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->mounts[0].image, "registry.example/tools:1");
  EXPECT_EQ(out->mounts[0].image_sub_path, "usr/bin");
  EXPECT_TRUE(out->mounts[0].readonly);  // an image is immutable, whatever the request says
  for (const char* bad : {"/usr/bin", "usr/../..", "..", "a/.."}) {
    m->set_image_sub_path(bad);
    EXPECT_EQ(FromProto(in).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  m->set_image_sub_path("");
  m->set_host_path("/srv");
  EXPECT_THAT(FromProto(in).status().message(), HasSubstr("both host_path"));
  m->set_host_path("");
  m->set_propagation(runtime::v1::PROPAGATION_BIDIRECTIONAL);
  EXPECT_EQ(FromProto(in).status().code(), absl::StatusCode::kInvalidArgument);
  m->clear_image();
  m->set_propagation(runtime::v1::PROPAGATION_PRIVATE);
  m->set_host_path("/srv");
  m->set_image_sub_path("x");
  EXPECT_THAT(FromProto(in).status().message(), HasSubstr("without an image"));
}

TEST(ContainerConfigFromProtoTest, SeccompProfilesMapToTheirKinds) {
  struct Case {
    std::function<void(runtime::v1::LinuxContainerSecurityContext&)> set;
    SeccompConfig::Kind kind;
    std::string path;
  };
  const Case cases[] = {
      {[](auto&) {}, SeccompConfig::Kind::kUnconfined, ""},
      {[](auto& sc) { sc.mutable_seccomp(); }, SeccompConfig::Kind::kRuntimeDefault, ""},
      {[](auto& sc) { SetLegacySeccompPath(sc, "runtime/default"); },
       SeccompConfig::Kind::kRuntimeDefault, ""},
      {[](auto& sc) { SetLegacySeccompPath(sc, "localhost/p.json"); },
       SeccompConfig::Kind::kLocalhost, "p.json"},
      {[](auto& sc) {
         sc.mutable_seccomp()->set_profile_type(runtime::v1::SecurityProfile::Localhost);
         sc.mutable_seccomp()->set_localhost_ref("/etc/x.json");
       },
       SeccompConfig::Kind::kLocalhost, "/etc/x.json"},
  };
  for (const Case& c : cases) {
    runtime::v1::ContainerConfig in = MinimalConfig();
    c.set(*in.mutable_linux()->mutable_security_context());
    absl::StatusOr<ContainerConfig> out = FromProto(in);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->seccomp.kind, c.kind);
    EXPECT_EQ(out->seccomp.localhost_path, c.path);
  }
}

TEST(ContainerLimitsConvertTest, RoundTrips) {
  runtime::v1::LinuxContainerResources in;
  in.set_cpu_period(100000);
  in.set_cpu_quota(50000);
  in.set_cpu_shares(512);
  in.set_memory_limit_in_bytes(128 << 20);
  in.set_cpuset_cpus("0-1");
  in.set_oom_score_adj(-100);
  auto* h = in.add_hugepage_limits();
  h->set_page_size("2MB");
  h->set_limit(4 << 20);
  (*in.mutable_unified())["memory.high"] = "100M";
  ContainerLimits l = FromProto(in);
  EXPECT_EQ(l.cpu_quota, 50000);
  EXPECT_EQ(l.hugepage_limits.at("2MB"), 4u << 20);
  runtime::v1::LinuxContainerResources back;
  ToProto(l, &back);
  EXPECT_EQ(back.SerializeAsString(), in.SerializeAsString());
}

TEST(ContainerFilterFromProtoTest, StateAndSelectors) {
  runtime::v1::ContainerFilter in;
  in.set_id("abc");
  in.set_pod_sandbox_id("pod");
  in.mutable_state()->set_state(runtime::v1::CONTAINER_RUNNING);
  (*in.mutable_label_selector())["a"] = "b";
  ContainerFilter f = FromProto(in);
  EXPECT_EQ(f.id_prefix, "abc");
  EXPECT_EQ(f.sandbox_id_prefix, "pod");
  EXPECT_EQ(f.state, std::optional<ContainerState>(ContainerState::kRunning));
  EXPECT_EQ(f.label_selector.at("a"), "b");
  EXPECT_FALSE(FromProto(runtime::v1::ContainerFilter{}).state.has_value());
}

TEST(ContainerStateToProtoTest, EveryState) {
  EXPECT_EQ(ToProto(ContainerState::kCreated), runtime::v1::CONTAINER_CREATED);
  EXPECT_EQ(ToProto(ContainerState::kRunning), runtime::v1::CONTAINER_RUNNING);
  EXPECT_EQ(ToProto(ContainerState::kExited), runtime::v1::CONTAINER_EXITED);
  EXPECT_EQ(ToProto(ContainerState::kUnknown), runtime::v1::CONTAINER_UNKNOWN);
}

// By name: <signal.h> may define the enum's names as macros.
runtime::v1::Signal CriSignal(const char* name) {
  runtime::v1::Signal s = runtime::v1::RUNTIME_DEFAULT;
  EXPECT_TRUE(runtime::v1::Signal_Parse(name, &s)) << name;
  return s;
}

TEST(StopSignalTest, CriSignalsMapToLinuxNumbersAndBack) {
  const std::pair<const char*, int> cases[] = {
      {"SIGTERM", 15},       {"SIGQUIT", 3},          {"SIGUSR1", 10},   {"SIGKILL", 9},
      {"SIGWINCH", 28},      {"SIGRTMIN", 34},        {"SIGRTMAX", 64},  {"SIGRTMINPLUS3", 37},
      {"SIGRTMAXMINUS2", 62}, {"SIGPWR", 30},
  };
  for (const auto& [name, number] : cases) {
    SCOPED_TRACE(name);
    EXPECT_EQ(SignalNumber(CriSignal(name)), number);
    EXPECT_EQ(runtime::v1::Signal_Name(ToProtoSignal(number)), name);
  }
  EXPECT_EQ(SignalNumber(runtime::v1::RUNTIME_DEFAULT), 0);
  EXPECT_EQ(SignalNumber(static_cast<runtime::v1::Signal>(999)), 0);
  EXPECT_EQ(ToProtoSignal(0), runtime::v1::RUNTIME_DEFAULT);
  EXPECT_EQ(ToProtoSignal(200), runtime::v1::RUNTIME_DEFAULT);
  // Two names for one number: the first.
  EXPECT_EQ(runtime::v1::Signal_Name(ToProtoSignal(6)), "SIGABRT");
}

TEST(StopSignalTest, ConfigCarriesItAndStatusReportsTheEffectiveOne) {
  runtime::v1::ContainerConfig in = MinimalConfig();
  absl::StatusOr<ContainerConfig> unset = FromProto(in);
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->stop_signal, 0);  // RUNTIME_DEFAULT: the image decides
  in.set_stop_signal(CriSignal("SIGQUIT"));
  absl::StatusOr<ContainerConfig> c = FromProto(in);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->stop_signal, 3);

  Container container;
  container.metadata.id = "c1";
  container.metadata.stop_signal = 10;
  runtime::v1::ContainerStatus st;
  ToProto(container, &st);
  EXPECT_EQ(runtime::v1::Signal_Name(st.stop_signal()), "SIGUSR1");
}

TEST(SupplementalGroupsPolicyTest, MergeByDefaultStrictWhenAskedUnknownRefused) {
  runtime::v1::ContainerConfig in = MinimalConfig();
  absl::StatusOr<ContainerConfig> unset = FromProto(in);
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->supplemental_groups_policy, SupplementalGroupsPolicy::kMerge);
  runtime::v1::LinuxContainerSecurityContext* sc = in.mutable_linux()->mutable_security_context();
  sc->set_supplemental_groups_policy(runtime::v1::Merge);
  absl::StatusOr<ContainerConfig> merge = FromProto(in);
  ASSERT_TRUE(merge.ok());
  EXPECT_EQ(merge->supplemental_groups_policy, SupplementalGroupsPolicy::kMerge);
  sc->set_supplemental_groups_policy(runtime::v1::Strict);
  sc->add_supplemental_groups(4000);
  absl::StatusOr<ContainerConfig> strict = FromProto(in);
  ASSERT_TRUE(strict.ok());
  EXPECT_EQ(strict->supplemental_groups_policy, SupplementalGroupsPolicy::kStrict);
  EXPECT_THAT(strict->supplemental_groups, ElementsAre(4000));
  // Kept in the record as a name, read back the same.
  EXPECT_EQ(nlohmann::json(*strict)["supplemental_groups_policy"], "strict");
  EXPECT_EQ(nlohmann::json(*strict).get<ContainerConfig>().supplemental_groups_policy,
            SupplementalGroupsPolicy::kStrict);

  sc->set_supplemental_groups_policy(static_cast<runtime::v1::SupplementalGroupsPolicy>(7));
  absl::StatusOr<ContainerConfig> bad = FromProto(in);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("linux.security_context.supplemental_groups_policy: unknown value 7"));
}

TEST(ContainerStatusUserTest, TheResolvedUserOrNothing) {
  Container c;
  c.metadata.id = "c1";
  c.metadata.uid = 1000;  // what was asked: not a report of what the process got
  c.metadata.gid = 3000;
  runtime::v1::ContainerStatus none;
  ToProto(c, &none);
  EXPECT_FALSE(none.has_user());

  c.metadata.resolved_user = ContainerUser{1000, 3000, {3000, 4000, 50000}};
  // Through the record's JSON, as a restarted daemon reads it.
  Container reread;
  reread.metadata = nlohmann::json(c.metadata).get<ContainerMetadata>();
  runtime::v1::ContainerStatus st;
  ToProto(reread, &st);
  ASSERT_TRUE(st.has_user());
  ASSERT_TRUE(st.user().has_linux());
  EXPECT_EQ(st.user().linux().uid(), 1000);
  EXPECT_EQ(st.user().linux().gid(), 3000);
  EXPECT_THAT(st.user().linux().supplemental_groups(), ElementsAre(3000, 4000, 50000));

  // A record from before the field: no user, and no error reading it.
  nlohmann::json old = nlohmann::json(c.metadata);
  old.erase("resolved_user");
  EXPECT_FALSE(old.get<ContainerMetadata>().resolved_user.has_value());
}

}  // namespace
}  // namespace podvisor::cri
