#include "image/layer_unpacker.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using testing::Compression;
using ::testing::HasSubstr;
using testing::TarEntry;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ByteReader FromString(const std::string& data) {
  auto pos = std::make_shared<size_t>(0);
  return [data, pos](char* buf, size_t size) -> absl::StatusOr<size_t> {
    size_t n = std::min(size, data.size() - *pos);
    std::memcpy(buf, data.data() + *pos, n);
    *pos += n;
    return n;
  };
}

class LayerUnpackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dest_ = tmp_.Join("layer");
    std::filesystem::create_directories(dest_);
  }
  absl::StatusOr<UnpackResult> Unpack(const std::vector<TarEntry>& entries,
                                      Compression c = Compression::kNone,
                                      const UnpackLimits& limits = {}) {
    return UnpackLayer(FromString(testing::Compress(testing::MakeTar(entries), c)), dest_, limits);
  }
  // Everything in the temp dir other than the layer dir itself.
  std::vector<std::string> Outside() const {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(tmp_.path())) {
      if (e.path() != dest_) out.push_back(e.path().string());
    }
    return out;
  }
  void ExpectRejected(const std::vector<TarEntry>& entries, const std::string& why,
                      const UnpackLimits& limits = {}) {
    auto r = Unpack(entries, Compression::kNone, limits);
    ASSERT_FALSE(r.ok()) << "accepted: " << entries.back().path;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(why));
    EXPECT_TRUE(Outside().empty()) << "wrote outside the layer: " << Outside()[0];
  }

  testing::TempDir tmp_;
  std::string dest_;
};

TEST_F(LayerUnpackerTest, ExtractsFilesDirsLinksWithAttributes) {
  TarEntry owned = testing::File("etc/shadow", "secret", 0640);
  owned.uid = 42;
  owned.gid = 43;
  std::vector<TarEntry> entries = {testing::Dir("etc", 0755),
                                   testing::File("etc/hosts", "127.0.0.1 localhost\n"),
                                   owned,
                                   testing::File("./bin/app", "#!/bin/sh\n", 04755),
                                   testing::Symlink("bin/sh", "/bin/app"),
                                   testing::Hardlink("bin/app2", "bin/app"),
                                   testing::Dir("tmp", 01777)};
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    std::filesystem::remove_all(dest_);
    std::filesystem::create_directories(dest_);
    auto r = Unpack(entries, c);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->diff_id, testing::Sha256Hex(testing::MakeTar(entries)));
    EXPECT_EQ(r->entries, 7);
    EXPECT_EQ(ReadText(dest_ + "/etc/hosts"), "127.0.0.1 localhost\n");
    struct stat st {};
    ASSERT_EQ(::lstat((dest_ + "/etc/shadow").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 42u);
    EXPECT_EQ(st.st_gid, 43u);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(st.st_mtime, 1700000000);
    ASSERT_EQ(::lstat((dest_ + "/bin/app").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 04755u);
    EXPECT_EQ(st.st_nlink, 2u);
    EXPECT_EQ(std::filesystem::read_symlink(dest_ + "/bin/sh"), "/bin/app");
    ASSERT_EQ(::lstat((dest_ + "/tmp").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 01777u);
  }
}

TEST_F(LayerUnpackerTest, WhiteoutsBecomeOverlayWhiteouts) {
  auto r = Unpack({testing::Dir("a"), testing::File("a/.wh.gone", ""), testing::Dir("o"),
                   testing::File("o/.wh..wh..opq", ""), testing::File("o/new", "n"),
                   testing::File(".wh.rootfile", "")},
                  Compression::kGzip);
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat st {};
  ASSERT_EQ(::lstat((dest_ + "/a/gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  ASSERT_EQ(::lstat((dest_ + "/rootfile").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_FALSE(std::filesystem::exists(dest_ + "/a/.wh.gone"));
  EXPECT_FALSE(std::filesystem::exists(dest_ + "/o/.wh..wh..opq"));
  char v[4] = {};
  EXPECT_EQ(::getxattr((dest_ + "/o").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
  EXPECT_EQ(v[0], 'y');
}

TEST_F(LayerUnpackerTest, AbsoluteNamesAreTheLayersOwn) {
  // "/" (the root itself, as umoci writes it), "/etc/x" and a hard link to "/etc/x": all below
  // the layer's root; nothing reaches the node's /etc.
  ASSERT_TRUE(Unpack({testing::Dir("/"), testing::Dir("/etc"),
                      testing::File("/etc/podvisor-layer-test", "inside"),
                      testing::Hardlink("/again", "/etc/podvisor-layer-test")})
                  .ok());
  EXPECT_EQ(ReadText(dest_ + "/etc/podvisor-layer-test"), "inside");
  EXPECT_EQ(ReadText(dest_ + "/again"), "inside");
  EXPECT_FALSE(std::filesystem::exists("/etc/podvisor-layer-test"));
}

TEST_F(LayerUnpackerTest, RejectsPathsLeavingTheLayer) {
  ExpectRejected({testing::File("/../evil", "x")}, "\"..\"");
  ExpectRejected({testing::File("../evil", "x")}, "\"..\"");
  ExpectRejected({testing::Dir("a"), testing::File("a/../../evil", "x")}, "\"..\"");
}

TEST_F(LayerUnpackerTest, RejectsWritesThroughSymlinks) {
  ExpectRejected({testing::Symlink("s", tmp_.path()), testing::File("s/evil", "x")}, "symlink");
  ExpectRejected({testing::Symlink("up", ".."), testing::File("up/evil", "x")}, "symlink");
  ExpectRejected({testing::Symlink("d", "/"), testing::Dir("d/x")}, "symlink");
  // A whiteout through a symlink must not delete anything outside either.
  std::ofstream(tmp_.Join("victim")) << "v";
  auto r = Unpack({testing::Symlink("s", tmp_.path()), testing::File("s/.wh.victim", "")});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(ReadText(tmp_.Join("victim")), "v");
  std::filesystem::remove(tmp_.Join("victim"));
}

TEST_F(LayerUnpackerTest, RejectsHardLinksOutside) {
  ExpectRejected({testing::Hardlink("h", "/etc/passwd")}, "not in the layer");  // the layer's
  ExpectRejected({testing::Hardlink("h", "../../etc/passwd")}, "\"..\"");
  ExpectRejected({testing::Symlink("s", "/etc"), testing::Hardlink("h", "s/passwd")}, "symlink");
  ExpectRejected({testing::Hardlink("h", "missing")}, "not in the layer");
  ExpectRejected({testing::Dir("d"), testing::Hardlink("h", "d")}, "directory");
}

TEST_F(LayerUnpackerTest, RejectsDevicesAndOversizedEntries) {
  TarEntry dev = testing::File("dev/mem", "");
  dev.type = TarEntry::kCharDev;
  ExpectRejected({dev}, "device nodes");
  UnpackLimits small;
  small.max_entry_bytes = 100;
  ExpectRejected({testing::File("big", std::string(101, 'x'))}, "over the limit", small);
  UnpackLimits few;
  few.max_entries = 2;
  ExpectRejected({testing::File("1", ""), testing::File("2", ""), testing::File("3", "")},
                 "more than 2 entries", few);
  ExpectRejected({testing::File(std::string(300, 'n'), "")}, "longer than 255");
}

TEST_F(LayerUnpackerTest, RejectsCompressionBombsAndGarbage) {
  UnpackLimits limits;
  limits.max_total_bytes = 1 << 20;
  auto bomb = UnpackLayer(
      FromString(testing::Compress(testing::MakeTar({testing::File("z", std::string(4 << 20, 0))}),
                                   Compression::kGzip)),
      dest_, limits);
  EXPECT_EQ(bomb.status().code(), absl::StatusCode::kInvalidArgument) << bomb.status();
  EXPECT_THAT(bomb.status().message(), HasSubstr("more than"));

  std::string gz = testing::Compress(
      testing::MakeTar({testing::File("f", std::string(1 << 16, 'q'))}), Compression::kGzip);
  auto truncated = UnpackLayer(FromString(gz.substr(0, gz.size() / 2)), dest_);
  EXPECT_FALSE(truncated.ok());
  std::string zs =
      testing::Compress(testing::MakeTar({testing::File("f", "data")}), Compression::kZstd);
  auto zt = UnpackLayer(FromString(zs.substr(0, zs.size() - 3)), dest_);
  EXPECT_FALSE(zt.ok());
  auto garbage = UnpackLayer(FromString(std::string(2048, '\x7f')), dest_);
  EXPECT_FALSE(garbage.ok());
}

TEST_F(LayerUnpackerTest, EmptyLayerIsValid) {
  auto r = Unpack({});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries, 0);
}

TEST(ErofsTest, BuildsAnImage) {
  testing::TempDir tmp;
  std::filesystem::create_directories(tmp.Join("tree/d"));
  std::ofstream(tmp.Join("tree/d/f")) << "x";
  ASSERT_TRUE(BuildErofsImage(tmp.Join("tree"), tmp.Join("img")).ok());
  EXPECT_GT(std::filesystem::file_size(tmp.Join("img")), 0u);
  auto missing = BuildErofsImage(tmp.Join("nope"), tmp.Join("img2"));
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace podvisor
