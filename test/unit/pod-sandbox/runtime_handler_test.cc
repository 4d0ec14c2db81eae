#include "pod-sandbox/runtime_handler.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

SandboxConfig Pod(std::string handler = "") {
  SandboxConfig c;
  c.pod_name = "p";
  c.pod_namespace = "ns";
  c.pod_uid = "u";
  c.runtime_handler = std::move(handler);
  return c;
}

TEST(RuntimeHandlerTest, DefaultRunsOrdinaryPodsInVms) {
  absl::StatusOr<HandlerKind> k = RouteSandbox(Pod(), HostPodPolicy::kHost, true);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(*k, HandlerKind::kVm);
}

TEST(RuntimeHandlerTest, DefaultSendsPodsThatNeedTheHostToTheHost) {
  for (int i = 0; i < 4; ++i) {
    SandboxConfig c = Pod();
    if (i == 0) c.network_mode = NamespaceMode::kNode;
    if (i == 1) c.pid_mode = NamespaceMode::kNode;
    if (i == 2) c.ipc_mode = NamespaceMode::kNode;
    if (i == 3) c.privileged = true;
    absl::StatusOr<HandlerKind> k = RouteSandbox(c, HostPodPolicy::kHost, true);
    ASSERT_TRUE(k.ok()) << k.status();
    EXPECT_EQ(*k, HandlerKind::kHost) << i;
  }
}

TEST(RuntimeHandlerTest, RefusePolicyRefusesPodsThatNeedTheHost) {
  SandboxConfig c = Pod();
  c.network_mode = NamespaceMode::kNode;
  c.privileged = true;
  absl::StatusOr<HandlerKind> k = RouteSandbox(c, HostPodPolicy::kRefuse, true);
  ASSERT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(),
              AllOf(HasSubstr("namespace_options.network=NODE"), HasSubstr("privileged"),
                    HasSubstr("handlers.host_pods: refuse")));
  EXPECT_EQ(*RouteSandbox(Pod(), HostPodPolicy::kRefuse, true), HandlerKind::kVm);
}

TEST(RuntimeHandlerTest, VmHandlerRefusesHostNamespacesButTakesPrivilegedPods) {
  SandboxConfig c = Pod("vm");
  c.ipc_mode = NamespaceMode::kNode;
  absl::StatusOr<HandlerKind> k = RouteSandbox(c, HostPodPolicy::kHost, true);
  ASSERT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(),
              AllOf(HasSubstr("\"vm\""), HasSubstr("namespace_options.ipc=NODE")));
  SandboxConfig priv = Pod("vm");
  priv.privileged = true;
  EXPECT_EQ(*RouteSandbox(priv, HostPodPolicy::kHost, true), HandlerKind::kVm);
}

TEST(RuntimeHandlerTest, HostHandlerAlwaysRunsOnTheHost) {
  EXPECT_EQ(*RouteSandbox(Pod("host"), HostPodPolicy::kRefuse, true), HandlerKind::kHost);
  absl::StatusOr<HandlerKind> k = RouteSandbox(Pod("host"), HostPodPolicy::kHost, false);
  EXPECT_EQ(k.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(k.status().message(), HasSubstr("handlers.crun"));
}

TEST(RuntimeHandlerTest, UnknownHandlerIsInvalidArgumentNamingIt) {
  absl::StatusOr<HandlerKind> k = RouteSandbox(Pod("kata-fc"), HostPodPolicy::kHost, true);
  ASSERT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(), HasSubstr("\"kata-fc\""));
}

TEST(RuntimeHandlerTest, UserNamespacePodsRunInVmsOnly) {
  SandboxConfig pod = Pod();
  pod.user_namespace = PodUserNamespace{{0, 65536, 65536}, {0, 65536, 65536}};
  EXPECT_EQ(*RouteSandbox(pod, HostPodPolicy::kHost, true), HandlerKind::kVm);
  // Privileged inside its own user namespace: still a VM pod, not a host one.
  pod.privileged = true;
  EXPECT_EQ(*RouteSandbox(pod, HostPodPolicy::kHost, true), HandlerKind::kVm);
  EXPECT_EQ(*RouteSandbox(pod, HostPodPolicy::kRefuse, true), HandlerKind::kVm);
  pod.runtime_handler = "vm";
  EXPECT_EQ(*RouteSandbox(pod, HostPodPolicy::kHost, true), HandlerKind::kVm);
  pod.runtime_handler = "host";
  absl::StatusOr<HandlerKind> k = RouteSandbox(pod, HostPodPolicy::kHost, true);
  ASSERT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(), HasSubstr("user namespaces"));
}

TEST(RuntimeHandlerTest, ListsTheHandlers) {
  std::vector<RuntimeHandlerInfo> all = RuntimeHandlers(true);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "");
  EXPECT_EQ(all[1].name, "vm");
  EXPECT_EQ(all[2].name, "host");
  // VM pods make recursive read-only volumes on the host; the host handler's crun cannot.
  EXPECT_TRUE(all[0].recursive_read_only_mounts);
  EXPECT_TRUE(all[1].recursive_read_only_mounts);
  EXPECT_TRUE(all[2].recursive_read_only_mounts);  // a staged read-only copy
  // User namespaces are made in the guest: VM pods only.
  EXPECT_TRUE(all[0].user_namespaces);
  EXPECT_TRUE(all[1].user_namespaces);
  EXPECT_FALSE(all[2].user_namespaces);
  EXPECT_EQ(RuntimeHandlers(false).size(), 2u);
  EXPECT_EQ(*ParseHostPodPolicy("refuse"), HostPodPolicy::kRefuse);
  EXPECT_FALSE(ParseHostPodPolicy("vm").ok());
}

}  // namespace
}  // namespace podvisor
