#include "store/object_store.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

struct Meta {
  std::string id;
  std::string name;
  std::string image;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Meta, id, name, image)

struct State {
  int exit_code = -1;
  std::string phase = "created";
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(State, exit_code, phase)

using Store = ObjectStore<Meta, State>;

class ObjectStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RecordStore::Open(dir_.Join("s.db"));
    ASSERT_TRUE(r.ok());
    records_ = std::move(*r);
    store_ = std::make_unique<Store>(records_.get(), "thing");
  }
  testing::TempDir dir_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<Store> store_;
};

TEST_F(ObjectStoreTest, NamesAreUnique) {
  ASSERT_TRUE(store_->Add({{"id1", "web", "busybox"}, {}}).ok());
  absl::Status dup = store_->Add({{"id2", "web", "nginx"}, {}});
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(dup.message()), ::testing::HasSubstr("\"web\" is reserved by id1"));
  EXPECT_EQ(store_->Add({{"id1", "other", ""}, {}}).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(store_->Remove("id1").ok());
  EXPECT_TRUE(store_->Add({{"id2", "web", "nginx"}, {}}).ok());  // name free again
}

TEST_F(ObjectStoreTest, UpdateChangesStatusDurably) {
  ASSERT_TRUE(store_->Add({{"id1", "a", "img"}, {}}).ok());
  auto updated = store_->Update("id1", [](State& s) {
    s.phase = "exited";
    s.exit_code = 3;
    return absl::OkStatus();
  });
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->status.exit_code, 3);

  Store reloaded(records_.get(), "thing");
  ASSERT_TRUE(reloaded.Load().ok());
  auto got = reloaded.Get("id1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status.phase, "exited");
  EXPECT_EQ(got->metadata.image, "img");
  // The name index is rebuilt on load.
  EXPECT_EQ(reloaded.Add({{"id9", "a", ""}, {}}).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ObjectStoreTest, FailedUpdateChangesNothing) {
  ASSERT_TRUE(store_->Add({{"id1", "a", "img"}, {}}).ok());
  auto r = store_->Update("id1", [](State& s) {
    s.phase = "half-done";
    return absl::FailedPreconditionError("not now");
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Get("id1")->status.phase, "created");
  EXPECT_EQ(store_->Update("nope", [](State&) { return absl::OkStatus(); }).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ObjectStoreTest, ResolvesUniquePrefixes) {
  ASSERT_TRUE(store_->Add({{"abc123", "", ""}, {}}).ok());
  ASSERT_TRUE(store_->Add({{"abd456", "", ""}, {}}).ok());
  EXPECT_EQ(*store_->Resolve("abc"), "abc123");
  EXPECT_EQ(*store_->Resolve("abd456"), "abd456");
  EXPECT_EQ(store_->Resolve("ab").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Resolve("x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Resolve("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ObjectStoreTest, UnreadableRecordsAreSkippedAndReported) {
  ASSERT_TRUE(store_->Add({{"good", "g", ""}, {}}).ok());
  ASSERT_TRUE(records_->Put("thing", "bad", "{not json").ok());
  Store reloaded(records_.get(), "thing");
  std::vector<std::string> skipped;
  ASSERT_TRUE(reloaded.Load(&skipped).ok());
  EXPECT_EQ(reloaded.Size(), 1u);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THAT(skipped[0], ::testing::HasSubstr("thing/bad"));
}

TEST_F(ObjectStoreTest, RecordsCarryTheirSchemaVersion) {
  ASSERT_TRUE(store_->Add({{"id1", "a", "img"}, {}}).ok());
  absl::StatusOr<std::string> raw = records_->Get("thing", "id1");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(nlohmann::json::parse(*raw).at("schema").get<int>(), Store::kSchemaVersion);
}

// A record from before versions were kept reads as version 0; one from a newer build is left
// alone rather than misread.
TEST_F(ObjectStoreTest, OlderRecordsLoadAndNewerOnesAreSkipped) {
  ASSERT_TRUE(records_
                  ->Put("thing", "old",
                        R"({"metadata":{"id":"old","name":"o","image":"i"},"status":{}})")
                  .ok());
  ASSERT_TRUE(records_
                  ->Put("thing", "new",
                        R"({"schema":99,"metadata":{"id":"new","name":"n"},"status":{}})")
                  .ok());
  Store reloaded(records_.get(), "thing");
  std::vector<std::string> skipped;
  ASSERT_TRUE(reloaded.Load(&skipped).ok());
  EXPECT_TRUE(reloaded.Get("old").ok());
  EXPECT_FALSE(reloaded.Get("new").ok());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THAT(skipped[0], ::testing::HasSubstr("thing/new: schema 99 is newer"));
}

TEST_F(ObjectStoreTest, ObserverSeesEveryDurableChangeInOrder) {
  std::vector<std::string> seen;
  store_->SetObserver([&](const Store::Object* before, const Store::Object* after) {
    seen.push_back(absl::StrCat(before ? before->status.phase : "-", ">",
                                after ? after->status.phase : "-"));
  });
  ASSERT_TRUE(store_->Add({{"id1", "a", "img"}, {}}).ok());
  ASSERT_TRUE(store_->Update("id1", [](State& s) {
                      s.phase = "running";
                      return absl::OkStatus();
                    }).ok());
  // A refused update and a duplicate add change nothing, so nothing is observed.
  EXPECT_FALSE(store_->Update("id1", [](State&) { return absl::CancelledError("no"); }).ok());
  EXPECT_FALSE(store_->Add({{"id1", "b", "img"}, {}}).ok());
  ASSERT_TRUE(store_->Remove("id1").ok());
  ASSERT_TRUE(store_->Remove("id1").ok());  // already gone: no change
  EXPECT_THAT(seen, ::testing::ElementsAre("->created", "created>running", "running>-"));
}

}  // namespace
}  // namespace podvisor
