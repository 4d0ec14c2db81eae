#include "store/store.h"

#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

TEST(RecordStoreTest, PutGetListDelete) {
  testing::TempDir dir;
  auto store = RecordStore::Open(dir.Join("s.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  RecordStore& s = **store;
  ASSERT_TRUE(s.Put("sandbox", "b", "2").ok());
  ASSERT_TRUE(s.Put("sandbox", "a", "1").ok());
  ASSERT_TRUE(s.Put("image", "a", "x").ok());
  auto a = s.Get("sandbox", "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "1");
  auto list = s.List("sandbox");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].first, "a");
  EXPECT_EQ((*list)[1].second, "2");
  ASSERT_TRUE(s.Delete("sandbox", "a").ok());
  EXPECT_EQ(s.Get("sandbox", "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(s.Delete("sandbox", "never-there").ok());
  EXPECT_EQ(s.List("image")->size(), 1u);
}

TEST(RecordStoreTest, ValuesMayHoldAnyBytes) {
  testing::TempDir dir;
  auto store = RecordStore::Open(dir.Join("s.db"));
  ASSERT_TRUE(store.ok());
  std::string binary("a\0b\xff", 4);
  ASSERT_TRUE((*store)->Put("k", "id", binary).ok());
  EXPECT_EQ(*(*store)->Get("k", "id"), binary);
}

TEST(RecordStoreTest, SurvivesReopen) {
  testing::TempDir dir;
  {
    auto store = RecordStore::Open(dir.Join("s.db"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Apply({{"k", "1", "one"}, {"k", "2", "two"}, {"k", "1", std::nullopt}})
                    .ok());
  }
  auto store = RecordStore::Open(dir.Join("s.db"));
  ASSERT_TRUE(store.ok());
  auto list = (*store)->List("k");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].second, "two");
}

TEST(RecordStoreTest, OpenFailsClearlyOnUnusablePath) {
  auto store = RecordStore::Open("/nonexistent-dir/podvisor/s.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/podvisor/s.db"),
            absl::string_view::npos);
}

TEST(RecordStoreTest, OpenFailsOnGarbageFile) {
  testing::TempDir dir;
  FILE* f = fopen(dir.Join("s.db").c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("this is not a database, just some text that is long enough to have a header........",
        f);
  fclose(f);
  auto store = RecordStore::Open(dir.Join("s.db"));
  EXPECT_FALSE(store.ok());
}

}  // namespace
}  // namespace podvisor
