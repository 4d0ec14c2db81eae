#include "image/reference.h"

#include "gtest/gtest.h"

namespace podvisor {
namespace {

struct Case {
  const char* input;
  const char* normalized;
};

TEST(ImageReferenceTest, NormalisesLikeKubeletAndContainerd) {
  const std::string d = "sha256:" + std::string(64, 'a');
  const Case cases[] = {
      {"busybox", "docker.io/library/busybox:latest"},
      {"busybox:1.36", "docker.io/library/busybox:1.36"},
      {"library/busybox", "docker.io/library/busybox:latest"},
      {"docker.io/busybox", "docker.io/library/busybox:latest"},
      {"index.docker.io/library/busybox:1", "docker.io/library/busybox:1"},
      {"bitnami/redis:7", "docker.io/bitnami/redis:7"},
      {"registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"},
      {"localhost/app", "localhost/app:latest"},
      {"localhost:5000/a/b/c:v1.0-rc_2", "localhost:5000/a/b/c:v1.0-rc_2"},
      {"127.0.0.1:5001/x", "127.0.0.1:5001/x:latest"},
      {"quay.io/a__b/c-d.e:t", "quay.io/a__b/c-d.e:t"},
  };
  for (const Case& c : cases) {
    auto ref = ParseImageReference(c.input);
    ASSERT_TRUE(ref.ok()) << c.input << ": " << ref.status();
    EXPECT_EQ(ref->String(), c.normalized) << c.input;
  }
}

TEST(ImageReferenceTest, Digests) {
  const std::string d = "sha256:" + std::string(64, 'b');
  auto by_digest = ParseImageReference("busybox@" + d);
  ASSERT_TRUE(by_digest.ok());
  EXPECT_EQ(by_digest->String(), "docker.io/library/busybox@" + d);
  EXPECT_EQ(by_digest->Object(), d);
  EXPECT_TRUE(by_digest->tag.empty());
  // name:tag@digest: the digest wins.
  auto both = ParseImageReference("quay.io/x/y:1.0@" + d);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both->String(), "quay.io/x/y@" + d);
  EXPECT_EQ(both->domain, "quay.io");
  EXPECT_EQ(both->path, "x/y");
}

TEST(ImageReferenceTest, RejectsInvalid) {
  for (const char* bad :
       {"", "Busybox", "docker.io/Library/busybox", "busybox:", "busybox:-x", "busybox@sha256:abc",
        "busybox@md5:"
        "0123456789abcdef0123456789abcdef",
        "a//b", "/busybox", "busybox/", "a..b/c", "-a/b", "a:b:c/d"}) {
    auto ref = ParseImageReference(bad);
    EXPECT_FALSE(ref.ok()) << bad << " -> " << (ref.ok() ? ref->String() : "");
    if (!ref.ok()) {
      EXPECT_EQ(ref.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_FALSE(ParseImageReference(std::string(300, 'a')).ok());
  EXPECT_FALSE(ParseImageReference("busybox:" + std::string(129, 't')).ok());
}

TEST(ImageReferenceTest, LoopbackHosts) {
  for (const char* h : {"localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000"}) {
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  }
  for (const char* h : {"docker.io", "128.0.0.1", "127.0.0.1.evil.com", "localhost.evil.com",
                        "[::2]:5000", "10.0.0.1:5000"}) {
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
  }
}

}  // namespace
}  // namespace podvisor
