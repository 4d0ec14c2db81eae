// The ImageService RPCs of a real podvisord, as crictl and kubelet call them, with a registry
// mirror in the config.

// clang-format off
// The CRI headers come first: <signal.h> macros (SIGABRT, ...) would clobber its Signal enum.
#include "test/support/cri_client.h"
// clang-format on

#include <fstream>

#include "absl/cleanup/cleanup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "test/integration/image/scripted_http_server.h"
#include "test/support/daemon_process.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using runtime::v1::ImageFsInfoRequest;
using runtime::v1::ImageFsInfoResponse;
using runtime::v1::ImageStatusRequest;
using runtime::v1::ImageStatusResponse;
using runtime::v1::ListImagesRequest;
using runtime::v1::ListImagesResponse;
using runtime::v1::PullImageRequest;
using runtime::v1::PullImageResponse;
using runtime::v1::RemoveImageRequest;
using runtime::v1::RemoveImageResponse;
using testing::CriClient;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ImageCriTest, PullListStatusRemoveAndFsInfoThroughAMirror) {
  testing::TempDir tmp;
  testing::LocalRegistry registry(tmp.Join("registry"), {});
  std::string error;
  ASSERT_TRUE(registry.Start(&error)) << error;
  testing::OciLayout layout(tmp.Join("layout"));
  auto layer = testing::OciLayout::MakeLayer(
      {testing::Dir("etc"), testing::File("etc/hostname", "pod\n")}, testing::Compression::kGzip);
  nlohmann::json desc = layout.AddImage({layer}, "amd64", "nobody");
  layout.Tag("3.9", desc);
  ASSERT_EQ(testing::Push(layout, "3.9", registry.host() + "/pause:3.9"), "");
  const std::string digest = desc["digest"];

  const std::string config = tmp.Join("config.yaml");
  std::ofstream(config) << "registry:\n  hosts:\n    registry.k8s.io:\n      mirrors: [\"http://"
                        << registry.host() << "\"]\n";
  // The daemon warms its hypervisor up in the background and is killed when the test ends,
  // possibly while libvirt is starting QEMU: whatever that left goes after it.
  auto reap = absl::MakeCleanup([&] { testing::KillQemuUnder(tmp.path()); });
  testing::DaemonProcess daemon({tmp.Join("root"),
                                 tmp.Join("state"),
                                 tmp.Join("pv.sock"),
                                 config,
                                 {},
                                 tmp.Join("podvisord.log")});
  ASSERT_TRUE(daemon.Start(&error)) << error;
  CriClient cri(daemon.endpoint());

  // Before any image: ImageFsInfo answers (crictl images calls it first).
  ImageFsInfoResponse fs;
  ASSERT_TRUE(cri.image().ImageFsInfo(CriClient::Context().get(), ImageFsInfoRequest(), &fs).ok());
  ASSERT_EQ(fs.image_filesystems_size(), 1);
  EXPECT_EQ(fs.image_filesystems(0).fs_id().mountpoint(), tmp.Join("root") + "/images");

  PullImageRequest pull;
  pull.mutable_image()->set_image("registry.k8s.io/pause:3.9");
  PullImageResponse pulled;
  grpc::Status s = cri.image().PullImage(CriClient::Context(120).get(), pull, &pulled);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon.ReadLog();
  EXPECT_THAT(pulled.image_ref(), HasSubstr("sha256:"));

  pull.mutable_image()->set_image("registry.k8s.io/pause@" + digest);
  PullImageResponse by_digest;
  ASSERT_TRUE(cri.image().PullImage(CriClient::Context(120).get(), pull, &by_digest).ok());
  EXPECT_EQ(by_digest.image_ref(), pulled.image_ref());

  ListImagesResponse list;
  ASSERT_TRUE(cri.image().ListImages(CriClient::Context().get(), ListImagesRequest(), &list).ok());
  ASSERT_EQ(list.images_size(), 1);
  const runtime::v1::Image& image = list.images(0);
  EXPECT_EQ(image.id(), pulled.image_ref());
  EXPECT_THAT(image.repo_tags(), ElementsAre("registry.k8s.io/pause:3.9"));
  EXPECT_THAT(image.repo_digests(), ElementsAre("registry.k8s.io/pause@" + digest));
  EXPECT_GT(image.size(), layer.blob.size());
  EXPECT_EQ(image.username(), "nobody");
  EXPECT_FALSE(image.has_uid());

  ListImagesRequest filtered;
  filtered.mutable_filter()->mutable_image()->set_image("registry.k8s.io/other:1");
  ListImagesResponse none;
  ASSERT_TRUE(cri.image().ListImages(CriClient::Context().get(), filtered, &none).ok());
  EXPECT_EQ(none.images_size(), 0);

  ImageStatusRequest status;
  status.mutable_image()->set_image("registry.k8s.io/pause:3.9");
  status.set_verbose(true);
  ImageStatusResponse st;
  ASSERT_TRUE(cri.image().ImageStatus(CriClient::Context().get(), status, &st).ok());
  EXPECT_EQ(st.image().id(), pulled.image_ref());
  ASSERT_TRUE(st.info().contains("info"));
  EXPECT_THAT(st.info().at("info"), HasSubstr("\"diffID\""));

  ASSERT_TRUE(cri.image().ImageFsInfo(CriClient::Context().get(), ImageFsInfoRequest(), &fs).ok());
  EXPECT_GT(fs.image_filesystems(0).used_bytes().value(), layer.blob.size());
  EXPECT_GT(fs.image_filesystems(0).inodes_used().value(), 3u);
  EXPECT_GT(fs.image_filesystems(0).timestamp(), 0);

  RemoveImageRequest remove;
  remove.mutable_image()->set_image(pulled.image_ref());
  RemoveImageResponse removed;
  ASSERT_TRUE(cri.image().RemoveImage(CriClient::Context().get(), remove, &removed).ok());
  ImageStatusResponse gone;
  ASSERT_TRUE(cri.image().ImageStatus(CriClient::Context().get(), status, &gone).ok());
  EXPECT_FALSE(gone.has_image());
  // Idempotent.
  EXPECT_TRUE(cri.image().RemoveImage(CriClient::Context().get(), remove, &removed).ok());

  pull.mutable_image()->set_image("registry.k8s.io/missing:1");
  s = cri.image().PullImage(CriClient::Context(120).get(), pull, &pulled);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("registry.k8s.io/missing:1"));
  pull.mutable_image()->set_image("Invalid/UPPER");
  s = cri.image().PullImage(CriClient::Context().get(), pull, &pulled);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// A kubelet whose PullImage deadline passes (or that hangs up) while a registry trickles bytes:
// the daemon drops the transfer and its download slot, and the next pull gets the slot.
TEST(ImageCriTest, PullImageDeadlineAbortsTheDownloadAndFreesTheSlot) {
  testing::TempDir tmp;
  testing::OciLayout layout(tmp.Join("layout"));
  std::string big(256 << 10, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 24);
  auto slow_layer = testing::OciLayout::MakeLayer({testing::File("big", big)},
                                                  testing::Compression::kNone);
  auto fast_layer = testing::OciLayout::MakeLayer({testing::File("small", "x")},
                                                  testing::Compression::kNone);
  const std::string slow = layout.AddImage({slow_layer})["digest"];
  const std::string fast = layout.AddImage({fast_layer})["digest"];
  const std::string slow_blob = testing::Sha256Hex(slow_layer.blob);
  auto blob = [&](const std::string& digest) {
    std::ifstream in(layout.dir() + "/blobs/sha256/" + digest.substr(7), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  testing::ScriptedHttpServer server([&](const testing::ScriptedHttpServer::Request& r) {
    testing::ScriptedHttpServer::Response out;
    if (r.path == "/v2/") return out;
    const std::string object = r.path.substr(r.path.rfind('/') + 1);
    const bool manifest = absl::StrContains(r.path, "/manifests/");
    const std::string digest =
        !manifest ? object : object == "slow" ? slow : object == "fast" ? fast : object;
    out.body = blob(digest);
    if (manifest) {
      out.headers.push_back({"Content-Type", "application/vnd.oci.image.manifest.v1+json"});
    }
    if (digest == slow_blob) out.trickle = absl::Milliseconds(20);
    return out;
  });
  const std::string config = tmp.Join("config.yaml");
  std::ofstream(config) << "registry:\n  max_concurrent_downloads: 1\n";
  auto reap = absl::MakeCleanup([&] { testing::KillQemuUnder(tmp.path()); });
  testing::DaemonProcess daemon({tmp.Join("root"), tmp.Join("state"), tmp.Join("pv.sock"), config,
                                 {}, tmp.Join("podvisord.log")});
  std::string error;
  ASSERT_TRUE(daemon.Start(&error)) << error;
  CriClient cri(daemon.endpoint());

  PullImageRequest pull;
  pull.mutable_image()->set_image(server.host() + "/app:slow");
  PullImageResponse pulled;
  grpc::Status s = cri.image().PullImage(CriClient::Context(3).get(), pull, &pulled);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  // The daemon hung up on the registry (a bounded wait; the trickle alone would last minutes).
  for (absl::Time end = absl::Now() + absl::Seconds(30);
       server.client_hang_ups() == 0 && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(server.client_hang_ups(), 1) << daemon.ReadLog();
  // The only download slot is free: the next pull goes through.
  pull.mutable_image()->set_image(server.host() + "/app:fast");
  s = cri.image().PullImage(CriClient::Context(60).get(), pull, &pulled);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon.ReadLog();
  // CRI v1.36: PullImageResponse.image_ref is the id ImageStatus reports.
  ImageStatusRequest status;
  status.mutable_image()->set_image(server.host() + "/app:fast");
  ImageStatusResponse st;
  ASSERT_TRUE(cri.image().ImageStatus(CriClient::Context().get(), status, &st).ok());
  EXPECT_EQ(st.image().id(), pulled.image_ref());
  EXPECT_THAT(daemon.ReadLog(), HasSubstr("cancelled"));
}

}  // namespace
}  // namespace podvisor
