// ContainerEventResponse from a bus event and the pod as it is now.
#include "cri/event_convert.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

Container MakeContainer(const std::string& id, ContainerState state) {
  Container c;
  c.metadata.id = id;
  c.metadata.sandbox_id = "pod1";
  c.metadata.config.name = id;
  c.status.state = state;
  return c;
}

Sandbox MakeSandbox(SandboxState state) {
  Sandbox s;
  s.metadata.id = "pod1";
  s.metadata.pod_name = "web";
  s.status.run_completed = true;
  s.status.state = state;
  return s;
}

TEST(EventConvertTest, TheEventsOwnRecordReplacesTheCurrentOne) {
  ContainerEvent e;
  e.type = ContainerEventType::kStarted;
  e.container_id = "a";
  e.sandbox_id = "pod1";
  e.created_at_ns = 42;
  e.container = MakeContainer("a", ContainerState::kRunning);
  // By now `a` has exited already, and `b` runs beside it.
  std::vector<Container> now = {MakeContainer("a", ContainerState::kExited),
                                MakeContainer("b", ContainerState::kRunning)};
  runtime::v1::ContainerEventResponse out;
  ToProto(e, MakeSandbox(SandboxState::kReady), now, &out);
  EXPECT_EQ(out.container_id(), "a");
  EXPECT_EQ(out.container_event_type(), runtime::v1::CONTAINER_STARTED_EVENT);
  EXPECT_EQ(out.created_at(), 42);
  EXPECT_EQ(out.pod_sandbox_status().id(), "pod1");
  EXPECT_EQ(out.pod_sandbox_status().metadata().name(), "web");
  EXPECT_EQ(out.pod_sandbox_status().state(), runtime::v1::SANDBOX_READY);
  ASSERT_EQ(out.containers_statuses_size(), 2);
  EXPECT_EQ(out.containers_statuses(0).id(), "a");
  EXPECT_EQ(out.containers_statuses(0).state(), runtime::v1::CONTAINER_RUNNING);
  EXPECT_EQ(out.containers_statuses(1).id(), "b");
}

TEST(EventConvertTest, CreatedContainerNotYetListedIsIncludedAndDeletedOneIsNot) {
  ContainerEvent created;
  created.type = ContainerEventType::kCreated;
  created.container_id = "a";
  created.sandbox_id = "pod1";
  created.container = MakeContainer("a", ContainerState::kCreated);
  runtime::v1::ContainerEventResponse out;
  ToProto(created, MakeSandbox(SandboxState::kReady), {}, &out);
  ASSERT_EQ(out.containers_statuses_size(), 1);
  EXPECT_EQ(out.containers_statuses(0).state(), runtime::v1::CONTAINER_CREATED);

  ContainerEvent deleted = created;
  deleted.type = ContainerEventType::kDeleted;
  out.Clear();
  ToProto(deleted, MakeSandbox(SandboxState::kReady), {MakeContainer("b", ContainerState::kExited)},
          &out);
  EXPECT_EQ(out.container_event_type(), runtime::v1::CONTAINER_DELETED_EVENT);
  ASSERT_EQ(out.containers_statuses_size(), 1);
  EXPECT_EQ(out.containers_statuses(0).id(), "b");
}

TEST(EventConvertTest, ASandboxEventCarriesItsOwnRecordEvenWhenGone) {
  ContainerEvent e;
  e.type = ContainerEventType::kDeleted;
  e.container_id = "pod1";
  e.sandbox_id = "pod1";
  e.sandbox = MakeSandbox(SandboxState::kNotReady);
  runtime::v1::ContainerEventResponse out;
  ToProto(e, std::nullopt, {}, &out);
  EXPECT_EQ(out.container_id(), "pod1");
  EXPECT_EQ(out.pod_sandbox_status().id(), "pod1");
  EXPECT_EQ(out.pod_sandbox_status().state(), runtime::v1::SANDBOX_NOTREADY);
  EXPECT_EQ(out.containers_statuses_size(), 0);
}

}  // namespace
}  // namespace podvisor::cri
