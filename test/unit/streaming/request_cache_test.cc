#include "streaming/request_cache.h"

#include <set>

#include <gtest/gtest.h>

namespace podvisor::streaming {
namespace {

TEST(RequestCacheTest, TokensAreSingleUse) {
  RequestCache cache(absl::Minutes(1), 10);
  ExecRequest exec;
  exec.container_id = "c1";
  absl::StatusOr<std::string> token = cache.Insert(exec);
  ASSERT_TRUE(token.ok());
  std::optional<StreamingRequest> first = cache.Consume(*token);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(std::get<ExecRequest>(*first).container_id, "c1");
  EXPECT_FALSE(cache.Consume(*token).has_value());
  EXPECT_FALSE(cache.Consume("unknown").has_value());
}

TEST(RequestCacheTest, TokensExpire) {
  absl::Time now = absl::FromUnixSeconds(1000);
  RequestCache cache(absl::Minutes(1), 10, [&] { return now; });
  absl::StatusOr<std::string> token = cache.Insert(AttachRequest{});
  ASSERT_TRUE(token.ok());
  now += absl::Seconds(61);
  EXPECT_FALSE(cache.Consume(*token).has_value());
  EXPECT_EQ(cache.Size(), 0u);
}

TEST(RequestCacheTest, BoundsPendingRequestsAndFreesExpiredOnes) {
  absl::Time now = absl::FromUnixSeconds(1000);
  RequestCache cache(absl::Minutes(1), 2, [&] { return now; });
  ASSERT_TRUE(cache.Insert(PortForwardRequest{}).ok());
  ASSERT_TRUE(cache.Insert(PortForwardRequest{}).ok());
  absl::StatusOr<std::string> third = cache.Insert(PortForwardRequest{});
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  now += absl::Minutes(2);
  EXPECT_TRUE(cache.Insert(PortForwardRequest{}).ok());
}

TEST(RequestCacheTest, TokensAreRandomAndUrlSafe) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string token = RandomToken();
    EXPECT_EQ(token.size(), 22u);
    EXPECT_EQ(token.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos);
    seen.insert(token);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace podvisor::streaming
