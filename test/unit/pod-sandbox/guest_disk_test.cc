#include "pod-sandbox/guest_disk.h"

#include <set>

#include "gtest/gtest.h"

namespace podvisor {
namespace {

TEST(DiskSlotsTest, SlotsRotateAndAReleasedOneIsNotTheNextUsed) {
  DiskSlots slots;
  EXPECT_EQ(*slots.Acquire("a"), 1u);
  EXPECT_EQ(*slots.Acquire("a"), 2u);
  slots.Release("a", 1);
  // Slot 1 was just unplugged: the guest may still be tearing it down.
  EXPECT_EQ(*slots.Acquire("a"), 3u);
  // Sandboxes have their own slots.
  EXPECT_EQ(*slots.Acquire("b"), 1u);
}

TEST(DiskSlotsTest, ReservedSlotsAreSkipped) {
  DiskSlots slots;
  slots.Reserve("a", 1);
  slots.Reserve("a", 2);
  EXPECT_EQ(*slots.Acquire("a"), 3u);
}

TEST(DiskSlotsTest, ExhaustionIsReportedAndAReleaseMakesRoom) {
  DiskSlots slots;
  std::set<uint32_t> seen;
  for (uint32_t i = DiskSlots::kFirst; i <= DiskSlots::kLast; ++i) {
    absl::StatusOr<uint32_t> slot = slots.Acquire("a");
    ASSERT_TRUE(slot.ok()) << slot.status();
    seen.insert(*slot);
  }
  EXPECT_EQ(seen.size(), DiskSlots::kLast - DiskSlots::kFirst + 1);
  EXPECT_EQ(slots.Acquire("a").status().code(), absl::StatusCode::kResourceExhausted);
  slots.Release("a", 17);
  EXPECT_EQ(*slots.Acquire("a"), 17u);
}

TEST(DiskSlotsTest, ForgetFreesAllOfASandbox) {
  DiskSlots slots;
  ASSERT_TRUE(slots.Acquire("a").ok());
  ASSERT_TRUE(slots.Acquire("a").ok());
  slots.Forget("a");
  // Everything of "a" is free again: its slots start over from the first.
  EXPECT_EQ(*slots.Acquire("a"), 1u);
  EXPECT_EQ(*slots.Acquire("a"), 2u);
  slots.Release("unknown", 3);  // harmless
}

}  // namespace
}  // namespace podvisor
