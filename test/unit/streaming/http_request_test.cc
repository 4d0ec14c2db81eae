#include "streaming/http_request.h"

#include <gtest/gtest.h>

#include "streaming/connection_admission.h"

namespace podvisor::streaming {
namespace {

TEST(HttpRequestTest, ParsesTargets) {
  std::optional<RequestTarget> t = ParseTarget("/portforward/abc?port=80");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->verb, "portforward");
  EXPECT_EQ(t->token, "abc");
  EXPECT_EQ(t->query, "port=80");
  EXPECT_FALSE(ParseTarget("/exec/a/b").has_value());
  EXPECT_FALSE(ParseTarget("/other/a").has_value());
  EXPECT_FALSE(ParseTarget("exec/a").has_value());
}

TEST(HttpRequestTest, QueryPortsAreCheckedAndBounded) {
  absl::StatusOr<std::vector<int32_t>> ports = QueryPorts("port=80,81&x=1&port=82", 8);
  ASSERT_TRUE(ports.ok()) << ports.status();
  EXPECT_EQ(*ports, (std::vector<int32_t>{80, 81, 82}));
  EXPECT_EQ(QueryPorts("port=0", 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QueryPorts("port=70000", 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QueryPorts("port=http", 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QueryPorts("port=1,2,3", 2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConnectionAdmissionTest, EvictsTheOldestUnauthenticatedAndBoundsEachSource) {
  auto admission = ConnectionAdmission::Create(/*max_upgraded=*/1, /*max_unauthenticated=*/2,
                                               /*max_per_source=*/2);
  int evicted = 0;
  auto a = admission->Admit("10.0.0.1");
  a->SetEvictor([&] { ++evicted; });
  auto b = admission->Admit("10.0.0.2");
  b->SetEvictor([&] { evicted += 10; });
  auto c = admission->Admit("10.0.0.3");  // pushes `a` out
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(evicted, 1);
  EXPECT_EQ(admission->unauthenticated(), 2u);
  auto d = admission->Admit("10.0.0.3");  // pushes `b` out
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(evicted, 11);
  EXPECT_EQ(admission->Admit("10.0.0.3"), nullptr);  // its two are there already
  // An upgraded connection leaves the pool; the upgraded pool is bounded on its own.
  EXPECT_TRUE(c->Upgrade());
  EXPECT_EQ(admission->unauthenticated(), 1u);
  EXPECT_EQ(admission->upgraded(), 1u);
  EXPECT_FALSE(d->Upgrade());
  EXPECT_EQ(admission->unauthenticated(), 0u);
  c.reset();
  EXPECT_EQ(admission->upgraded(), 0u);
  a.reset();  // evicted tickets release nothing twice
  b.reset();
  EXPECT_EQ(admission->unauthenticated(), 0u);
}

}  // namespace
}  // namespace podvisor::streaming
