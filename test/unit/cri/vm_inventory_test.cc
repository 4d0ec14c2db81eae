#include "cri/vm_inventory.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

TEST(VmInventoryTest, PssComesFromSmapsRollup) {
  absl::StatusOr<uint64_t> pss = ParsePssBytes(
      "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0    [rollup]\n"
      "Rss:              209712 kB\n"
      "Pss:              123456 kB\n"
      "Pss_Anon:          90000 kB\n");
  ASSERT_TRUE(pss.ok()) << pss.status();
  EXPECT_EQ(*pss, 123456ull * 1024);
  EXPECT_FALSE(ParsePssBytes("Rss: 1 kB\n").ok());
  EXPECT_FALSE(ParsePssBytes("Pss: lots\n").ok());
}

TEST(VmInventoryTest, PssOfThisProcessIsReadable) {
  absl::StatusOr<uint64_t> pss = ReadPssBytes(::getpid());
  ASSERT_TRUE(pss.ok()) << pss.status();
  EXPECT_GT(*pss, 0u);
  EXPECT_EQ(ReadPssBytes(0x3fffffff).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace podvisor::cri
