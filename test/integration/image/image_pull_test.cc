// Pulls from real registries on loopback through ImageController.

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/image_service.h"
#include "store/store.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::OciLayout;
using testing::TarEntry;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Extracts an erofs image with fsck.erofs; returns the directory.
std::string ExtractErofs(const std::string& image, const std::string& dir) {
  std::string out;
  EXPECT_EQ(testing::Run({"fsck.erofs", "--extract=" + dir, image}, &out), 0) << out;
  return dir;
}

size_t CountFiles(const std::string& dir) {
  if (!std::filesystem::exists(dir)) return 0;
  size_t n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    n += e.is_regular_file() ? 1 : 0;
  }
  return n;
}

class ImagePullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    registry_ = std::make_unique<testing::LocalRegistry>(tmp_.Join("registry"),
                                                         testing::LocalRegistry::Options{});
    ASSERT_TRUE(registry_->Start(&error)) << error;
    layout_ = std::make_unique<OciLayout>(tmp_.Join("layout"));
  }

  void TearDown() override {
    controller_.reset();
    records_.reset();
  }

  ImageController& Controller(RegistryConfig config = {}) {
    controller_.reset();
    if (!records_) {
      auto records = RecordStore::Open(tmp_.Join("podvisor.db"));
      EXPECT_TRUE(records.ok()) << records.status();
      records_ = std::move(*records);
    }
    ImageController::Options options;
    options.root_dir = tmp_.Join("images");
    options.registry = std::move(config);
    auto c = ImageController::Create(std::move(options), records_.get());
    EXPECT_TRUE(c.ok()) << c.status();
    controller_ = std::move(*c);
    return *controller_;
  }

  // Tags `desc` in the layout and pushes it to <registry>/<repo>:<tag>.
  void PushTo(const std::string& host, const std::string& repo_tag, const nlohmann::json& desc,
              const std::vector<std::string>& extra = {}) {
    std::string tag = repo_tag;  // unique in the layout: repo and tag
    for (char& c : tag) c = (c == ':' || c == '/') ? '_' : c;
    layout_->Tag(tag, desc);
    ASSERT_EQ(testing::Push(*layout_, tag, host + "/" + repo_tag, extra), "");
  }
  void Push(const std::string& repo_tag, const nlohmann::json& desc) {
    PushTo(registry_->host(), repo_tag, desc);
  }

  // A small two-layer image: the base with /etc/os-release and /bin/tool, the top adding a file.
  nlohmann::json SimpleImage(testing::Compression c = testing::Compression::kGzip,
                             const std::string& user = "") {
    base_ =
        OciLayout::MakeLayer({testing::Dir("etc"), testing::File("etc/os-release", "ID=test\n"),
                              testing::Dir("bin"), testing::File("bin/tool", "#!/bin/sh\n", 0755)},
                             c);
    top_ = OciLayout::MakeLayer({testing::File("etc/motd", "hello\n")}, c);
    return layout_->AddImage({base_, top_}, "amd64", user);
  }

  std::string ImagesDir() const { return tmp_.Join("images"); }

  testing::TempDir tmp_;
  std::unique_ptr<testing::LocalRegistry> registry_;
  std::unique_ptr<OciLayout> layout_;
  OciLayout::Layer base_, top_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<ImageController> controller_;
};

TEST_F(ImagePullTest, PullsByTagAndDigestAndRecordsTheImage) {
  nlohmann::json desc = SimpleImage(testing::Compression::kGzip, "1234:5");
  Push("team/app:1.0", desc);
  ImageController& images = Controller();

  auto pulled = images.Pull(registry_->host() + "/team/app:1.0", {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  const std::string repo = registry_->host() + "/team/app";
  EXPECT_THAT(pulled->status.repo_tags, ::testing::ElementsAre(repo + ":1.0"));
  EXPECT_THAT(pulled->status.repo_digests,
              ::testing::ElementsAre(repo + "@" + desc["digest"].get<std::string>()));
  EXPECT_EQ(pulled->metadata.uid, 1234);
  EXPECT_EQ(pulled->metadata.layers.size(), 2u);
  EXPECT_EQ(pulled->metadata.layers[0].diff_id, base_.diff_id);
  // Size: manifest + config + compressed layers.
  int64_t expected =
      desc["size"].get<int64_t>() + static_cast<int64_t>(base_.blob.size() + top_.blob.size());
  EXPECT_GT(pulled->metadata.size, expected);  // plus the config
  EXPECT_LT(pulled->metadata.size, expected + 2000);

  // By digest: the same image, found by id, tag and digest.
  auto by_digest = images.Pull(repo + "@" + desc["digest"].get<std::string>(), {});
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->metadata.id, pulled->metadata.id);
  for (const std::string& name : {pulled->metadata.id, pulled->metadata.id.substr(7, 12),
                                  repo + ":1.0", repo + "@" + desc["digest"].get<std::string>()}) {
    auto got = images.Get(name);
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    EXPECT_EQ(got->metadata.id, pulled->metadata.id);
  }
  EXPECT_TRUE(absl::IsNotFound(images.Get(repo + ":2.0").status()));

  // The layer images hold the files.
  auto layers = images.LayerImages(pulled->metadata.id);
  ASSERT_TRUE(layers.ok()) << layers.status();
  ASSERT_EQ(layers->size(), 2u);
  std::string base = ExtractErofs((*layers)[0], tmp_.Join("x0"));
  EXPECT_EQ(ReadText(base + "/etc/os-release"), "ID=test\n");
  EXPECT_EQ(std::filesystem::status(base + "/bin/tool").permissions() &
                std::filesystem::perms::owner_exec,
            std::filesystem::perms::owner_exec);
  std::string top = ExtractErofs((*layers)[1], tmp_.Join("x1"));
  EXPECT_EQ(ReadText(top + "/etc/motd"), "hello\n");

  // Records survive a restart of the controller.
  ImageController& again = Controller();
  auto reloaded = again.Get(repo + ":1.0");
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->metadata.id, pulled->metadata.id);
}

TEST_F(ImagePullTest, PinnedImagesFromConfig) {
  Push("pinned:1", SimpleImage());
  Push("loose:1", SimpleImage(testing::Compression::kZstd, "7"));  // another config: another id
  RegistryConfig config;
  config.pinned_images = {registry_->host() + "/pinned:1"};
  ImageController& images = Controller(config);
  auto pinned = images.Pull(registry_->host() + "/pinned:1", {});
  auto loose = images.Pull(registry_->host() + "/loose:1", {});
  ASSERT_TRUE(pinned.ok() && loose.ok());
  EXPECT_TRUE(images.Get(pinned->metadata.id)->status.pinned);
  EXPECT_FALSE(images.Get(loose->metadata.id)->status.pinned);
  config.pinned_images = {"Not A Reference"};
  controller_.reset();
  ImageController::Options options;
  options.root_dir = ImagesDir();
  options.registry = config;
  EXPECT_EQ(ImageController::Create(options, records_.get()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ImagePullTest, MirrorServesARegistryAndFallsBackToUpstream) {
  Push("pause:3.9", SimpleImage());
  RegistryConfig config;
  // A dead mirror first, then the live one; upstream (registry.k8s.io) is unreachable here.
  config.hosts["registry.k8s.io"].mirrors = {
      "http://127.0.0.1:" + std::to_string(testing::FreePort()), "http://" + registry_->host()};
  ImageController& images = Controller(config);
  auto pulled = images.Pull("registry.k8s.io/pause:3.9", {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_THAT(pulled->status.repo_tags, ::testing::ElementsAre("registry.k8s.io/pause:3.9"));

  // A mirror that is no registry (python's http.server: 404 on /v2/) is skipped with a reason.
  testing::ChildProcess web;
  const int web_port = testing::FreePort();
  ASSERT_TRUE(web.Start({"python3", "-m", "http.server", "--bind", "127.0.0.1",
                         std::to_string(web_port), "--directory", tmp_.path()},
                        tmp_.Join("web.log")));
  ASSERT_TRUE(testing::WaitForPort(web_port));
  RegistryConfig config3;
  config3.hosts["registry.k8s.io"].mirrors = {"http://127.0.0.1:" + std::to_string(web_port)};
  auto not_registry = Controller(config3).Pull("registry.k8s.io/podvisor-test/no-such-image:1", {});
  ASSERT_FALSE(not_registry.ok());
  EXPECT_THAT(not_registry.status().message(), HasSubstr("not an OCI distribution registry"));

  // A mirror for the loopback registry itself that does not have the image: upstream answers.
  Push("other/img:1", SimpleImage(testing::Compression::kZstd));
  RegistryConfig config2;
  config2.hosts[registry_->host()].mirrors = {"http://" + registry_->host() + "/v2"};
  ImageController& images2 = Controller(config2);
  EXPECT_TRUE(images2.Pull(registry_->host() + "/other/img:1", {}).ok());
}

TEST_F(ImagePullTest, MultiArchIndexResolvesToLinuxAmd64) {
  auto arm = layout_->AddImage(
      {OciLayout::MakeLayer({testing::File("arch", "arm64")}, testing::Compression::kGzip)},
      "arm64");
  auto amd = layout_->AddImage(
      {OciLayout::MakeLayer({testing::File("arch", "amd64")}, testing::Compression::kGzip)},
      "amd64");
  auto index = layout_->AddIndex({arm, amd});
  Push("multi:1", index);
  ImageController& images = Controller();
  auto pulled = images.Pull(registry_->host() + "/multi:1", {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->metadata.config.architecture, "amd64");
  EXPECT_EQ(pulled->metadata.manifest_digest, amd["digest"].get<std::string>());
  // The repo digest is the index's, as kubelet and containerd report it.
  EXPECT_THAT(
      pulled->status.repo_digests,
      ::testing::ElementsAre(registry_->host() + "/multi@" + index["digest"].get<std::string>()));
  auto layers = images.LayerImages(pulled->metadata.id);
  ASSERT_TRUE(layers.ok());
  EXPECT_EQ(ReadText(ExtractErofs((*layers)[0], tmp_.Join("x")) + "/arch"), "amd64");
}

TEST_F(ImagePullTest, ZstdAndUncompressedLayersWithWhiteouts) {
  auto l0 = OciLayout::MakeLayer(
      {testing::Dir("a"), testing::File("a/keep", "k"), testing::File("a/gone", "g"),
       testing::Dir("opq"), testing::File("opq/old", "o")},
      testing::Compression::kZstd);
  auto l1 =
      OciLayout::MakeLayer({testing::File("a/.wh.gone", ""), testing::Dir("opq"),
                            testing::File("opq/.wh..wh..opq", ""), testing::File("opq/new", "n")},
                           testing::Compression::kNone);
  Push("wh:1", layout_->AddImage({l0, l1}));
  ImageController& images = Controller();
  auto pulled = images.Pull(registry_->host() + "/wh:1", {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  auto layers = images.LayerImages(pulled->metadata.id);
  ASSERT_TRUE(layers.ok());
  std::string top = ExtractErofs((*layers)[1], tmp_.Join("x1"));
  struct stat st {};
  ASSERT_EQ(::lstat((top + "/a/gone").c_str(), &st), 0) << "whiteout missing";
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_FALSE(std::filesystem::exists(top + "/opq/.wh..wh..opq"));
  EXPECT_EQ(ReadText(top + "/opq/new"), "n");

  // The opaque mark is an xattr: check it on the mounted image (needs root and loop devices).
  std::string mnt = tmp_.Join("mnt");
  std::filesystem::create_directories(mnt);
  std::string out;
  if (testing::Run({"mount", "-t", "erofs", "-o", "loop,ro", (*layers)[1], mnt}, &out) != 0) {
    GTEST_SKIP() << "cannot loop-mount erofs here (" << out << "); opaque xattr not checked";
  }
  char value[8] = {};
  ssize_t n = ::getxattr((mnt + "/opq").c_str(), "trusted.overlay.opaque", value, sizeof value);
  testing::Run({"umount", mnt});
  EXPECT_EQ(n, 1);
  EXPECT_EQ(value[0], 'y');
}

TEST_F(ImagePullTest, PullingAgainFetchesNothing) {
  nlohmann::json desc = SimpleImage();
  Push("again:1", desc);
  ImageController& images = Controller();
  auto first = images.Pull(registry_->host() + "/again:1", {});
  ASSERT_TRUE(first.ok()) << first.status();
  // Take the layers and config away from the registry: a re-pull by tag only reads the manifest.
  for (const ImageLayer& l : first->metadata.layers) {
    std::filesystem::remove(registry_->BlobDataPath(l.digest));
  }
  std::filesystem::remove(registry_->BlobDataPath(first->metadata.id));
  auto second = images.Pull(registry_->host() + "/again:1", {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->metadata.id, first->metadata.id);
  // By digest with the registry gone: nothing is asked at all.
  registry_->Stop();
  auto third = images.Pull(registry_->host() + "/again@" + desc["digest"].get<std::string>(), {});
  ASSERT_TRUE(third.ok()) << third.status();
}

TEST_F(ImagePullTest, DigestMismatchFailsAndStoresNothing) {
  nlohmann::json desc = SimpleImage();
  Push("bad:1", desc);
  // Flip a byte of the top layer as stored by the registry (same size, other digest).
  const std::string data = registry_->BlobDataPath(testing::Sha256Hex(top_.blob));
  std::string bytes = ReadText(data);
  ASSERT_FALSE(bytes.empty());
  bytes[bytes.size() / 2] ^= 0x55;
  std::ofstream(data, std::ios::binary | std::ios::trunc) << bytes;

  ImageController& images = Controller();
  auto pulled = images.Pull(registry_->host() + "/bad:1", {});
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kDataLoss) << pulled.status();
  EXPECT_THAT(pulled.status().message(), HasSubstr("digest mismatch"));
  EXPECT_TRUE(images.List("").empty());
  EXPECT_FALSE(std::filesystem::exists(ImagesDir() + "/content/blobs/sha256/" +
                                       testing::Sha256Hex(top_.blob).substr(7)));
  EXPECT_EQ(CountFiles(ImagesDir() + "/content/ingest"), 0u);
  EXPECT_EQ(CountFiles(ImagesDir() + "/tmp"), 0u);
  // A later GC (here: a restart) leaves no blob of the failed pull behind.
  Controller();
  EXPECT_EQ(CountFiles(ImagesDir() + "/content/blobs"), 0u);
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 0u);
}

TEST_F(ImagePullTest, HostileLayerIsRejectedAndWritesNothingOutside) {
  auto evil =
      OciLayout::MakeLayer({testing::File("../../escaped", "x")}, testing::Compression::kGzip);
  Push("evil:1", layout_->AddImage({evil}));
  auto link = OciLayout::MakeLayer({testing::Symlink("s", "/tmp"), testing::File("s/escaped", "x")},
                                   testing::Compression::kGzip);
  Push("evil:2", layout_->AddImage({link}));
  ImageController& images = Controller();
  for (const std::string tag : {"1", "2"}) {
    auto pulled = images.Pull(registry_->host() + "/evil:" + tag, {});
    ASSERT_FALSE(pulled.ok()) << tag;
    EXPECT_EQ(pulled.status().code(), absl::StatusCode::kInvalidArgument) << pulled.status();
    EXPECT_THAT(pulled.status().message(), HasSubstr("layer rejected"));
  }
  EXPECT_FALSE(std::filesystem::exists(ImagesDir() + "/escaped"));
  EXPECT_FALSE(std::filesystem::exists(tmp_.Join("escaped")));
  EXPECT_FALSE(std::filesystem::exists("/tmp/escaped"));
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 0u);
  EXPECT_TRUE(images.List("").empty());
}

TEST_F(ImagePullTest, ConcurrentPullsShareTheWork) {
  Push("conc:1", SimpleImage());
  Push("conc:2", layout_->AddImage({base_, OciLayout::MakeLayer({testing::File("two", "2")},
                                                                testing::Compression::kGzip)}));
  ImageController& images = Controller();
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<ImageRecord>> results(6, absl::UnknownError("not run"));
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      results[i] = images.Pull(registry_->host() + "/conc:" + (i % 2 ? "1" : "2"), {});
    });
  }
  for (auto& t : threads) t.join();
  for (auto& r : results) ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(images.List("").size(), 2u);
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 3u);  // the shared base unpacked once
  EXPECT_EQ(CountFiles(ImagesDir() + "/content/ingest"), 0u);
}

TEST_F(ImagePullTest, RemoveByTagIdAndDigestCollectsUnsharedContent) {
  nlohmann::json one = SimpleImage();
  Push("rm:1", one);
  Push("rm:2", layout_->AddImage({base_, OciLayout::MakeLayer({testing::File("two", "2")},
                                                              testing::Compression::kGzip)}));
  ImageController& images = Controller();
  const std::string repo = registry_->host() + "/rm";
  auto a = images.Pull(repo + ":1", {});
  auto b = images.Pull(repo + ":2", {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 3u);

  // A container uses image a: removing it drops its names but keeps its content.
  bool a_in_use = true;
  images.SetInUseCheck([&](const std::string& id) { return a_in_use && id == a->metadata.id; });
  ASSERT_TRUE(images.Remove(repo + ":1").ok());
  EXPECT_TRUE(absl::IsNotFound(images.Get(repo + ":1").status()));
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 3u);
  a_in_use = false;
  ASSERT_TRUE(images.GarbageCollect().ok());
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 2u);  // the shared base stays for b
  EXPECT_TRUE(images.LayerImages(b->metadata.id).ok());

  // By digest: b goes, and with it everything.
  ASSERT_TRUE(images.Remove(b->status.repo_digests[0]).ok());
  EXPECT_TRUE(images.List("").empty());
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 0u);
  EXPECT_EQ(CountFiles(ImagesDir() + "/content/blobs"), 0u);
  // Removing what is gone is fine.
  EXPECT_TRUE(images.Remove(b->metadata.id).ok());
}

TEST_F(ImagePullTest, GarbageCollectionDuringPullsNeverBreaksAPull) {
  Push("gc:1", SimpleImage());
  Push("gc:2", layout_->AddImage({base_, OciLayout::MakeLayer({testing::File("two", "2")},
                                                              testing::Compression::kGzip)}));
  ImageController& images = Controller();
  const std::string one = registry_->host() + "/gc:1";
  const std::string two = registry_->host() + "/gc:2";
  std::atomic<bool> stop{false};
  std::thread collector([&] {
    while (!stop) {
      images.Remove(one).IgnoreError();
      images.Remove(two).IgnoreError();
      images.GarbageCollect().IgnoreError();
    }
  });
  {
    absl::Cleanup join = [&] {  // also when an assertion below returns early
      stop = true;
      collector.join();
    };
    for (int i = 0; i < 15; ++i) {
      auto pulled = images.Pull(i % 2 ? one : two, {});
      ASSERT_TRUE(pulled.ok()) << i << ": " << pulled.status();
    }
  }
  auto last = images.Pull(one, {});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(images.LayerImages(last->metadata.id).ok());
}

TEST_F(ImagePullTest, RegistryDownMidPullFailsCleanly) {
  Push("half:1", SimpleImage());
  testing::TokenProxy proxy(tmp_.Join("proxy"),
                            {"http://" + registry_->host(), "", "", "", "truncate"});
  std::string error;
  ASSERT_TRUE(proxy.Start(&error)) << error;
  ImageController& images = Controller();
  auto pulled = images.Pull(proxy.host() + "/half:1", {});
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kUnavailable) << pulled.status();
  EXPECT_TRUE(images.List("").empty());
  EXPECT_EQ(CountFiles(ImagesDir() + "/content/ingest"), 0u);
  EXPECT_EQ(CountFiles(ImagesDir() + "/layers"), 0u);
}

TEST_F(ImagePullTest, BearerTokenAuth) {
  Push("private/app:1", SimpleImage());
  testing::TokenProxy proxy(tmp_.Join("proxy"),
                            {"http://" + registry_->host(), "alice", "s3cret-pw", "refresh-xyz"});
  std::string error;
  ASSERT_TRUE(proxy.Start(&error)) << error;
  const std::string ref = proxy.host() + "/private/app:1";

  ImageController& images = Controller();
  auto anonymous = images.Pull(ref, {});
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated) << anonymous.status();

  RegistryCredentials wrong;
  wrong.username = "alice";
  wrong.password = "not-the-password";
  auto bad = images.Pull(ref, wrong);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnauthenticated) << bad.status();
  EXPECT_THAT(bad.status().message(), Not(HasSubstr("not-the-password")));

  RegistryCredentials good;
  good.username = "alice";
  good.password = "s3cret-pw";
  auto ok = images.Pull(ref, good);
  ASSERT_TRUE(ok.ok()) << ok.status() << "\n" << proxy.Log();

  // Credentials for another registry (server_address) are not presented here.
  RegistryCredentials elsewhere = good;
  elsewhere.server_address = "https://other.example.com/v1/";
  ASSERT_TRUE(images.Remove(ok->metadata.id).ok());
  auto scoped = images.Pull(ref, elsewhere);
  EXPECT_EQ(scoped.status().code(), absl::StatusCode::kUnauthenticated) << scoped.status();
  RegistryCredentials here = good;
  here.server_address = proxy.host();
  ok = images.Pull(ref, here);
  ASSERT_TRUE(ok.ok()) << ok.status();

  // The same through the other CRI AuthConfig fields, from an empty store each time.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(images.Remove(ok->metadata.id).ok());
    RegistryCredentials c;
    if (i == 0) c.auth = "YWxpY2U6czNjcmV0LXB3";  // base64("alice:s3cret-pw")
    if (i == 1) c.identity_token = "refresh-xyz";
    if (i == 2) c.registry_token = "static-registry-token";
    auto r = images.Pull(ref, c);
    EXPECT_TRUE(r.ok()) << i << ": " << r.status();
  }
}

TEST_F(ImagePullTest, BasicAuthWithHtpasswd) {
  std::string out;
  const std::string htpasswd = tmp_.Join("htpasswd");
  ASSERT_EQ(testing::Run({"htpasswd", "-Bbc", htpasswd, "bob", "hunter2-pw"}, &out), 0) << out;
  testing::LocalRegistry secured(tmp_.Join("secured"), {htpasswd, "", ""});
  std::string error;
  ASSERT_TRUE(secured.Start(&error)) << error;
  PushTo(secured.host(), "basic/app:1", SimpleImage(), {"--dest-creds", "bob:hunter2-pw"});

  ImageController& images = Controller();
  const std::string ref = secured.host() + "/basic/app:1";
  auto anonymous = images.Pull(ref, {});
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated) << anonymous.status();
  RegistryCredentials wrong{"bob", "wrong-pw-123", "", "", "", ""};
  auto bad = images.Pull(ref, wrong);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnauthenticated) << bad.status();
  EXPECT_THAT(bad.status().message(), Not(HasSubstr("wrong-pw-123")));
  RegistryCredentials good{"bob", "hunter2-pw", "", "", "", ""};
  auto ok = images.Pull(ref, good);
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST_F(ImagePullTest, TlsWithPrivateCaAndInsecureSkipVerify) {
  const std::string certs = tmp_.Join("certs");
  std::filesystem::create_directories(certs);
  ASSERT_EQ(testing::MakeTestCertificates(certs), "");
  testing::LocalRegistry tls(tmp_.Join("tls"),
                             {"", certs + "/server.pem", certs + "/server-key.pem"});
  std::string error;
  ASSERT_TRUE(tls.Start(&error)) << error;
  PushTo(tls.host(), "tls/app:1", SimpleImage());
  const std::string ref = tls.host() + "/tls/app:1";

  // Loopback without TLS settings means plain HTTP, which a TLS registry refuses.
  EXPECT_FALSE(Controller().Pull(ref, {}).ok());

  RegistryConfig with_ca;
  with_ca.hosts[tls.host()].ca_file = certs + "/ca.pem";
  auto ok = Controller(with_ca).Pull(ref, {});
  ASSERT_TRUE(ok.ok()) << ok.status();

  RegistryConfig skip;
  skip.hosts[tls.host()].insecure_skip_verify = true;
  ImageController& images = Controller(skip);
  ASSERT_TRUE(images.Remove(ok->metadata.id).ok());
  EXPECT_TRUE(images.Pull(ref, {}).ok());

  // A CA that did not sign the server's certificate is refused.
  const std::string other = tmp_.Join("other");
  std::filesystem::create_directories(other);
  ASSERT_EQ(testing::MakeTestCertificates(other), "");
  RegistryConfig wrong_ca;
  wrong_ca.hosts[tls.host()].ca_file = other + "/ca.pem";
  ImageController& strict = Controller(wrong_ca);
  ASSERT_TRUE(strict.Remove(ok->metadata.id).ok());
  auto refused = strict.Pull(ref, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
}

}  // namespace
}  // namespace podvisor
