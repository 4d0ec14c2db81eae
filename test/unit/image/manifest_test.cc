#include "image/manifest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;

const std::string kD1 = "sha256:" + std::string(64, '1');
const std::string kD2 = "sha256:" + std::string(64, '2');
const std::string kD3 = "sha256:" + std::string(64, '3');

TEST(ManifestTest, DockerSchema2Manifest) {
  std::string body = R"({"schemaVersion":2,
    "mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1470,"digest":")" +
                     kD1 + R"("},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2811478,
               "digest":")" +
                     kD2 + R"("}]})";
  auto m = ParseManifest(body, "");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->is_index);
  EXPECT_EQ(m->config.digest, kD1);
  EXPECT_EQ(m->config.size, 1470);
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].size, 2811478);
}

TEST(ManifestTest, OciManifestWithoutMediaTypeUsesHeaderOrShape) {
  std::string body =
      R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":")" +
      kD1 +
      R"("},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5,"digest":")" +
      kD2 + R"("}]})";
  auto m = ParseManifest(body, "application/vnd.oci.image.manifest.v1+json; charset=utf-8");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->media_type, kMediaOciManifest);
  auto shaped = ParseManifest(body, "application/json");
  ASSERT_TRUE(shaped.ok()) << shaped.status();
}

TEST(ManifestTest, IndexAndPlatformSelection) {
  std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
    "manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"digest":")" +
                     kD1 +
                     R"(","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":11,"digest":")" +
                     kD3 +
                     R"(","platform":{"os":"unknown","architecture":"unknown"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":12,"digest":")" +
                     kD2 + R"(","platform":{"os":"linux","architecture":"amd64"}}]})";
  auto idx = ParseManifest(body, "");
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_TRUE(idx->is_index);
  auto chosen = SelectPlatform(*idx, "amd64");
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(chosen->digest, kD2);
  auto none = SelectPlatform(*idx, "s390x");
  EXPECT_TRUE(absl::IsNotFound(none.status()));
  EXPECT_THAT(none.status().message(), HasSubstr("linux/arm64/v8"));
}

TEST(ManifestTest, RejectsBadDocuments) {
  EXPECT_FALSE(ParseManifest("not json", "").ok());
  EXPECT_FALSE(ParseManifest("[]", "").ok());
  auto v1 = ParseManifest(R"({"schemaVersion":1,"name":"x"})", "");
  EXPECT_EQ(v1.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(v1.status().message(), HasSubstr("schema 1"));
  // bad digest, negative size, unknown layer type, missing config
  const std::string layer_tmpl =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"size":1,"digest":")" +
      kD1 + R"("},"layers":[LAYER]})";
  for (
      const std::string& layer : std::vector<std::string>{
          R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","size":1,"digest":"sha256:zz"})",
          R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","size":-1,"digest":")" + kD2 +
              "\"}",
          R"({"mediaType":"application/x-evil","size":1,"digest":")" + kD2 + "\"}",
          R"("string")"}) {
    std::string body = layer_tmpl;
    body.replace(body.find("LAYER"), 5, layer);
    EXPECT_FALSE(ParseManifest(body, "").ok()) << body;
  }
  EXPECT_FALSE(
      ParseManifest(
          R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]})",
          "")
          .ok());
  EXPECT_FALSE(ParseManifest(std::string(5 << 20, ' '), "").ok());
}

TEST(ManifestTest, ImageConfig) {
  std::string body = R"({"architecture":"amd64","os":"linux","config":{"User":"1000:1000",
    "Env":["PATH=/bin"],"Entrypoint":["/init"],"Cmd":["-v"],"WorkingDir":"/w",
    "Labels":{"a":"b"},"ExposedPorts":{"80/tcp":{}},"Volumes":{"/data":{}},"StopSignal":"SIGINT"},
    "rootfs":{"type":"layers","diff_ids":[")" +
                     kD1 + R"(",")" + kD2 + R"("]}})";
  auto c = ParseImageConfig(body);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user, "1000:1000");
  EXPECT_EQ(c->entrypoint, std::vector<std::string>{"/init"});
  EXPECT_EQ(c->diff_ids.size(), 2u);
  EXPECT_EQ(c->exposed_ports, std::vector<std::string>{"80/tcp"});
  EXPECT_EQ(c->labels.at("a"), "b");
  EXPECT_FALSE(ParseImageConfig(R"({"rootfs":{"type":"layers","diff_ids":["x"]}})").ok());
  EXPECT_FALSE(ParseImageConfig(R"({"config":{}})").ok());
}

}  // namespace
}  // namespace podvisor
