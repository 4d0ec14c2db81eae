#include "pod-sandbox/host_stats.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace podvisor {
namespace {

TEST(HostStatsTest, ParsesProcStatAndStatus) {
  // A command name with spaces and parentheses; utime 150 and stime 50 ticks at 100 Hz.
  const char stat[] =
      "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 9000 0 12 0 150 50 0 0 20 0 5 0 100 "
      "1000000 2000 18446744073709551615";
  const char status[] = "Name:\tqemu\nVmRSS:\t  204800 kB\nRssAnon:\t  102400 kB\nRssShmem:\t 4 kB\n";
  absl::StatusOr<ProcessCost> c = ParseProcessCost(stat, status, 100);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->cpu_ns, 2000000000u);
  EXPECT_EQ(c->minor_faults, 9000u);
  EXPECT_EQ(c->major_faults, 12u);
  EXPECT_EQ(c->rss_bytes, 204800u * 1024);
  EXPECT_EQ(c->anon_bytes, 102400u * 1024);
  EXPECT_EQ(c->shmem_bytes, 4096u);
  EXPECT_FALSE(ParseProcessCost("garbage", status, 100).ok());
}

TEST(HostStatsTest, ReadsALiveProcessAndNotAGoneOne) {
  absl::StatusOr<ProcessCost> self = ReadProcessCost(getpid());
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_GT(self->rss_bytes, 0u);
  EXPECT_TRUE(absl::IsNotFound(ReadProcessCost(0).status()));
}

TEST(HostStatsTest, ParsesNetDevWithoutLoopback) {
  const char text[] =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
      "drop fifo colls carrier compressed\n"
      "    lo:     100       1    0    0    0     0          0         0      100       1    0 "
      "   0    0     0       0          0\n"
      "  eth0:    5000      40    2    0    0     0          0         0     7000      50    3 "
      "   0    0     0       0          0\n";
  std::vector<InterfaceUsage> got = ParseNetDev(text);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].name, "eth0");
  EXPECT_EQ(got[0].rx_bytes, 5000u);
  EXPECT_EQ(got[0].rx_errors, 2u);
  EXPECT_EQ(got[0].tx_bytes, 7000u);
  EXPECT_EQ(got[0].tx_errors, 3u);
}

}  // namespace
}  // namespace podvisor
