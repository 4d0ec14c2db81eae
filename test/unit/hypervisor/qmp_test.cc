#include "hypervisor/qmp.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor::qmp {
namespace {

using ::testing::HasSubstr;

TEST(QmpTest, CommandsAreQmpJson) {
  EXPECT_EQ(SetIgnoreShared(),
            R"({"arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]},)"
            R"("execute":"migrate-set-capabilities"})");
  EXPECT_EQ(GetFd("podvisor-state"),
            R"({"arguments":{"fdname":"podvisor-state"},"execute":"getfd"})");
  EXPECT_EQ(MigrateToFd("s"), R"({"arguments":{"uri":"fd:s"},"execute":"migrate"})");
  EXPECT_EQ(MigrateIncomingFromFd("s"),
            R"({"arguments":{"uri":"fd:s"},"execute":"migrate-incoming"})");
  EXPECT_EQ(QueryStatus(), R"({"execute":"query-status"})");
}

TEST(QmpTest, ErrorsKeepQemuDescription) {
  auto r = ReplyReturn(R"({"id":"libvirt-5","error":{"class":"GenericError",)"
                       R"("desc":"State blocked by non-migratable device"}})");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("non-migratable device"));
  EXPECT_EQ(ReplyReturn(R"({"error":{"class":"DeviceNotFound","desc":"x"}})").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReplyReturn("not json").status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ReplyReturn(R"({"id":1})").status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(*ReplyReturn(R"({"return":{}})"), "{}");
}

TEST(QmpTest, MigrationStates) {
  auto done = ParseQueryMigrate(R"({"return":{"status":"completed","total-time":11}})");
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->status, "completed");
  auto failed = ParseQueryMigrate(R"({"return":{"status":"failed","error-desc":"disk full"}})");
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->error, "disk full");
  EXPECT_EQ(ParseQueryMigrate(R"({"return":{}})")->status, "none");
  // Wrong types are not trusted (and do not throw).
  EXPECT_EQ(ParseQueryMigrate(R"({"return":{"status":7}})")->status, "none");
  EXPECT_FALSE(ParseQueryMigrate(R"({"return":[]})").ok());
}

TEST(QmpTest, RunStates) {
  EXPECT_EQ(*ParseQueryStatus(R"({"return":{"status":"inmigrate","running":false}})"),
            "inmigrate");
  EXPECT_FALSE(ParseQueryStatus(R"({"return":{"running":true}})").ok());
}

}  // namespace
}  // namespace podvisor::qmp
