#include "image/registry_client.h"

#include "gtest/gtest.h"
#include "image/image_service.h"

namespace podvisor {
namespace {

TEST(WwwAuthenticateTest, BearerChallenge) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c[0].params["service"], "registry.docker.io");
  EXPECT_EQ(c[0].params["scope"], "repository:library/busybox:pull");
}

TEST(WwwAuthenticateTest, BasicTokensEscapesAndSeveralChallenges) {
  auto c = ParseWwwAuthenticate(
      R"(Basic realm="a \"quoted\" realm", charset=UTF-8, Bearer realm=https://x/t,scope="a,b")");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params["realm"], "a \"quoted\" realm");
  EXPECT_EQ(c[0].params["charset"], "UTF-8");
  EXPECT_EQ(c[1].scheme, "bearer");
  EXPECT_EQ(c[1].params["realm"], "https://x/t");
  EXPECT_EQ(c[1].params["scope"], "a,b");
}

TEST(WwwAuthenticateTest, MalformedInputDoesNotCrash) {
  for (const char* h : {"", "   ", "Bearer", "Bearer realm=\"unterminated", "=x", ",,,",
                        "Bearer ,realm=", "Basic realm=\"x\\"}) {
    auto c = ParseWwwAuthenticate(h);
    EXPECT_LE(c.size(), 2u) << h;
  }
}

TEST(RegistryEndpointsTest, MirrorsThenUpstream) {
  RegistryConfig config;
  config.hosts["registry.k8s.io"].mirrors = {"http://127.0.0.1:5001/", "https://mirror.example/v2"};
  config.hosts["mirror.example"].ca_file = "/etc/ca.pem";
  auto eps = RegistryEndpoints(config, "registry.k8s.io");
  ASSERT_EQ(eps.size(), 3u);
  EXPECT_EQ(eps[0].base_url, "http://127.0.0.1:5001");
  EXPECT_TRUE(eps[0].mirror);
  EXPECT_EQ(eps[1].base_url, "https://mirror.example");
  EXPECT_EQ(eps[1].ca_file, "/etc/ca.pem");
  EXPECT_EQ(eps[2].base_url, "https://registry.k8s.io");
  EXPECT_FALSE(eps[2].mirror);
}

TEST(RegistryEndpointsTest, SchemeRules) {
  RegistryConfig config;
  EXPECT_EQ(RegistryEndpoints(config, "docker.io").back().base_url, "https://registry-1.docker.io");
  EXPECT_EQ(RegistryEndpoints(config, "localhost:5000").back().base_url, "http://localhost:5000");
  EXPECT_EQ(RegistryEndpoints(config, "127.0.0.1:5000").back().base_url, "http://127.0.0.1:5000");
  config.hosts["127.0.0.1:5000"].ca_file = "/ca.pem";
  EXPECT_EQ(RegistryEndpoints(config, "127.0.0.1:5000").back().base_url, "https://127.0.0.1:5000");
  config.hosts["intranet:80"].plain_http = true;
  EXPECT_EQ(RegistryEndpoints(config, "intranet:80").back().base_url, "http://intranet:80");
}

TEST(RedactUrlTest, DropsQueryAndUserInfo) {
  EXPECT_EQ(RedactUrl("https://s3.example/blob?X-Amz-Signature=secret"), "https://s3.example/blob");
  EXPECT_EQ(RedactUrl("https://user:pw@host/v2/"), "https://host/v2/");
  EXPECT_EQ(RedactUrl("http://host/a#frag"), "http://host/a");
}

TEST(UrlOriginTest, SchemeHostAndPortDecideWhoGetsCredentials) {
  EXPECT_EQ(UrlOrigin("https://Registry.Example/v2/x"), "https://registry.example:443");
  EXPECT_EQ(UrlOrigin("https://registry.example:443/v2/"), "https://registry.example:443");
  EXPECT_EQ(UrlOrigin("http://registry.example/v2/"), "http://registry.example:80");
  EXPECT_EQ(UrlOrigin("http://127.0.0.1:5000?x=1"), "http://127.0.0.1:5000");
  EXPECT_EQ(UrlOrigin("https://user:pw@cdn.example/blob"), "https://cdn.example:443");
  EXPECT_EQ(UrlOrigin("http://[::1]:8080/v2/"), "http://[::1]:8080");
  EXPECT_EQ(UrlOrigin("http://[::1]/v2/"), "http://[::1]:80");
  EXPECT_NE(UrlOrigin("https://registry.example/"), UrlOrigin("http://registry.example/"));
  EXPECT_NE(UrlOrigin("http://127.0.0.1:5000/"), UrlOrigin("http://127.0.0.1:5001/"));
  EXPECT_EQ(UrlOrigin("/relative"), "");
}

// CRI v1.36: image_id (Image.id, PullImageResponse.image_ref) is the image's id; a container's
// image_ref is the digested reference of the repository it was created from.
TEST(ImageIdentityTest, ImageRefIsTheDigestOfTheRepositoryTheContainerNamed) {
  ImageRecord image;
  image.metadata.id = "sha256:" + std::string(64, 'c');
  const std::string digest = "sha256:" + std::string(64, 'd');
  EXPECT_EQ(DigestedReference(image, "busybox"), image.metadata.id);  // no repo digest at all
  image.status.repo_digests = {"registry.a/team/app@" + digest,
                               "docker.io/library/busybox@" + digest};
  EXPECT_EQ(DigestedReference(image, "busybox"), "docker.io/library/busybox@" + digest);
  EXPECT_EQ(DigestedReference(image, "docker.io/library/busybox:1.36"),
            "docker.io/library/busybox@" + digest);
  EXPECT_EQ(DigestedReference(image, "registry.a/team/app:latest"),
            "registry.a/team/app@" + digest);
  EXPECT_EQ(DigestedReference(image, "registry.a/team/app@" + digest),
            "registry.a/team/app@" + digest);
  // Named by id (as kubelet does with PullImageResponse.image_ref): the first repo digest.
  EXPECT_EQ(DigestedReference(image, image.metadata.id), "registry.a/team/app@" + digest);
  EXPECT_EQ(DigestedReference(image, "other.example/x:1"), "registry.a/team/app@" + digest);
}

}  // namespace
}  // namespace podvisor
