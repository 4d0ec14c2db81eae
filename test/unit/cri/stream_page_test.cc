// The Stream* list RPCs send their lists in pages.
// clang-format off
#include "runtime/v1/api.pb.h"  // first: the CRI Signal enum vs <signal.h> macros
// clang-format on

#include "cri/rpc.h"
#include "gtest/gtest.h"

namespace podvisor::cri {
namespace {

google::protobuf::RepeatedPtrField<runtime::v1::Container> Containers(int n) {
  google::protobuf::RepeatedPtrField<runtime::v1::Container> out;
  for (int i = 0; i < n; ++i) out.Add()->set_id("c" + std::to_string(i));
  return out;
}

std::vector<runtime::v1::StreamContainersResponse> PagesOf(int n) {
  auto items = Containers(n);
  return Pages<runtime::v1::StreamContainersResponse>(
      &items, [](runtime::v1::StreamContainersResponse& m) { return m.mutable_containers(); });
}

TEST(StreamPageTest, ListsAreCutInPagesOfAHundredInOrder) {
  EXPECT_TRUE(PagesOf(0).empty());
  ASSERT_EQ(PagesOf(1).size(), 1u);
  ASSERT_EQ(PagesOf(100).size(), 1u);
  std::vector<runtime::v1::StreamContainersResponse> pages = PagesOf(250);
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_EQ(pages[0].containers_size(), 100);
  EXPECT_EQ(pages[1].containers_size(), 100);
  EXPECT_EQ(pages[2].containers_size(), 50);
  int next = 0;
  for (const auto& page : pages) {
    for (const auto& c : page.containers()) EXPECT_EQ(c.id(), "c" + std::to_string(next++));
  }
  EXPECT_EQ(next, 250);
}

}  // namespace
}  // namespace podvisor::cri
