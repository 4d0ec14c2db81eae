#include "image/content_store.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

TEST(ContentStoreTest, StoresVerifiedBlobsOnly) {
  testing::TempDir tmp;
  ContentStore store(tmp.Join("content"));
  ASSERT_TRUE(store.Init().ok());
  const std::string data = "hello blob";
  const std::string digest = Sha256Digest(data);
  ASSERT_TRUE(store.Put(digest, data).ok());
  EXPECT_TRUE(store.Has(digest));
  EXPECT_EQ(*store.Read(digest, 100), data);
  EXPECT_EQ(store.Read(digest, 3).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(store.List(), ::testing::ElementsAre(digest));

  const std::string other = Sha256Digest("other");
  auto bad = store.Put(other, data);
  EXPECT_EQ(bad.code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store.Has(other));

  auto w = store.NewWriter();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("abc", 3).ok());
  EXPECT_EQ((*w)->Commit(Sha256Digest("abc"), 4).code(), absl::StatusCode::kDataLoss);
  w->reset();
  EXPECT_TRUE(std::filesystem::is_empty(tmp.Join("content/ingest")));

  ASSERT_TRUE(store.Delete(digest).ok());
  EXPECT_FALSE(store.Has(digest));
  EXPECT_TRUE(store.Delete(digest).ok());
  EXPECT_FALSE(store.Has("sha256:../../etc"));
}

}  // namespace
}  // namespace podvisor
