// Pulls from registries that misbehave on purpose (a scripted HTTP server on loopback, and an
// HTTPS redirector): redirects that downgrade or change origin, trickled bytes, a client that
// gives up, declared sizes the disk cannot hold, manifests with too many layers.

#include <dirent.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/image_service.h"
#include "store/store.h"
#include "test/integration/image/scripted_http_server.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::OciLayout;
using testing::ScriptedHttpServer;
using Request = ScriptedHttpServer::Request;
using Response = ScriptedHttpServer::Response;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Bytes that do not compress, so that a layer's blob is as large as its content.
std::string Noise(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  for (char& c : out) {
    seed = seed * 1103515245u + 12345u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

int ThreadCount() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

// Waits up to `limit` for `done`; a bounded wait, not a timing assertion.
template <typename Fn>
bool WaitFor(Fn done, absl::Duration limit = absl::Seconds(20)) {
  for (absl::Time end = absl::Now() + limit; absl::Now() < end;) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

class HostileRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = std::make_unique<OciLayout>(tmp_.Join("layout"));
    server_ = std::make_unique<ScriptedHttpServer>([this](const Request& r) { return Handle(r); });
    ASSERT_GT(server_->port(), 0);
  }
  void TearDown() override {
    controller_.reset();
    server_.reset();
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

  // An image of `layers` layers, each one file of `bytes` bytes; tagged `tag` on the server.
  nlohmann::json AddImage(const std::string& tag, int layers, size_t bytes, uint32_t seed) {
    std::vector<OciLayout::Layer> ls;
    for (int i = 0; i < layers; ++i) {
      ls.push_back(
          OciLayout::MakeLayer({testing::File(absl::StrCat("f", i), Noise(bytes, seed * 1000 + i))},
                               testing::Compression::kNone));
    }
    nlohmann::json desc = layout_->AddImage(ls);
    Tag(tag, desc["digest"]);
    return desc;
  }
  // Serves the manifest `body` (stored as a blob) under `tag`.
  std::string AddManifest(const std::string& tag, const nlohmann::json& manifest) {
    std::string digest = layout_->AddBlob(manifest.dump());
    Tag(tag, digest);
    return digest;
  }
  void Tag(const std::string& tag, const std::string& digest) {
    absl::MutexLock lock(&mu_);
    tags_[tag] = digest;
  }
  nlohmann::json Manifest(const nlohmann::json& desc) {
    return nlohmann::json::parse(Blob(desc["digest"]));
  }
  std::string Blob(const std::string& digest) const {
    return ReadBytes(layout_->dir() + "/blobs/sha256/" + digest.substr(7));
  }
  std::string Ref(const std::string& tag) const { return absl::StrCat(server_->host(), "/", tag); }
  void Script(std::function<std::optional<Response>(const Request&)> fn) {
    absl::MutexLock lock(&mu_);
    script_ = std::move(fn);
  }
  int BlobRequests(const std::string& digest) const {
    int n = 0;
    for (const Request& r : server_->requests()) n += absl::EndsWith(r.path, "/blobs/" + digest);
    return n;
  }

  // /v2/, /v2/<repo>/manifests/<tag or digest>, /v2/<repo>/blobs/<digest>, /cdn/<digest>.
  Response ServeLayout(const Request& request) {
    Request r = request;
    r.path = r.path.substr(0, r.path.find('?'));
    Response out;
    if (r.path == "/v2/") {
      out.body = "{}";
      return out;
    }
    const size_t m = r.path.find("/manifests/");
    const size_t b =
        r.path.find("/blobs/") != std::string::npos ? r.path.find("/blobs/") : r.path.find("/cdn/");
    std::string digest;
    if (m != std::string::npos) {
      std::string object = r.path.substr(m + 11);
      absl::MutexLock lock(&mu_);
      auto it = tags_.find(absl::StrCat(r.path.substr(4, m - 4), ":", object));
      digest = it != tags_.end() ? it->second : object;
      out.headers.push_back({"Content-Type", "application/vnd.oci.image.manifest.v1+json"});
      out.headers.push_back({"Docker-Content-Digest", digest});
    } else if (b != std::string::npos) {
      digest = r.path.substr(r.path.rfind('/') + 1);
    }
    const std::string path = layout_->dir() + "/blobs/sha256/" + digest.substr(7);
    if (digest.size() < 8 || !std::filesystem::exists(path)) {
      out.code = 404;
      out.body = R"({"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]})";
      return out;
    }
    out.body = ReadBytes(path);
    return out;
  }

  Response Handle(const Request& r) {
    std::function<std::optional<Response>(const Request&)> script;
    {
      absl::MutexLock lock(&mu_);
      script = script_;
    }
    if (script) {
      if (std::optional<Response> answer = script(r)) return *answer;
    }
    return ServeLayout(r);
  }

  testing::TempDir tmp_;
  std::unique_ptr<OciLayout> layout_;
  std::unique_ptr<ScriptedHttpServer> server_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<ImageController> controller_;
  absl::Mutex mu_;
  std::map<std::string, std::string> tags_ ABSL_GUARDED_BY(mu_);  // "repo:tag" -> digest
  std::function<std::optional<Response>(const Request&)> script_ ABSL_GUARDED_BY(mu_);
};

TEST_F(HostileRegistryTest, ManifestWithTooManyLayersIsInvalidArgument) {
  nlohmann::json layers = nlohmann::json::array();
  nlohmann::json diff_ids = nlohmann::json::array();
  for (int i = 0; i < 200; ++i) {
    layers.push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                      {"digest", testing::Sha256Hex(absl::StrCat("layer ", i))},
                      {"size", 10}});
    diff_ids.push_back(testing::Sha256Hex(absl::StrCat("diff ", i)));
  }
  const std::string config =
      nlohmann::json{{"architecture", "amd64"},
                     {"os", "linux"},
                     {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
          .dump();
  const std::string config_digest = layout_->AddBlob(config);
  AddManifest("many:1", {{"schemaVersion", 2},
                         {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                         {"config",
                          {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                           {"digest", config_digest},
                           {"size", config.size()}}},
                         {"layers", layers}});
  auto r = Controller().Pull(Ref("many:1"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("has 200 layers, more than the limit of 128"));
  EXPECT_THAT(r.status().message(), HasSubstr("registry.max_layers"));
  for (const Request& req : server_->requests()) EXPECT_THAT(req.path, Not(HasSubstr("/blobs/")));
}

TEST_F(HostileRegistryTest, LayersDownloadThroughABoundedPool) {
  constexpr int kLayers = 40;
  AddImage("wide:1", kLayers, 512, 1);
  RegistryConfig config;
  config.max_concurrent_downloads = 2;
  ImageController& c = Controller(config);
  // Each blob answer waits a little, so that a thread per layer would all exist at once.
  Script([this](const Request& r) -> std::optional<Response> {
    if (r.path.find("/blobs/") == std::string::npos) return std::nullopt;
    Response out = ServeLayout(r);
    out.delay = absl::Milliseconds(30);
    return out;
  });
  std::atomic<bool> done{false};
  std::atomic<int> peak{0};
  std::thread sampler([&] {
    while (!done) {
      peak = std::max(peak.load(), ThreadCount());
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  absl::SleepFor(absl::Milliseconds(20));
  const int baseline = ThreadCount();
  auto r = c.Pull(Ref("wide:1"), {});
  done = true;
  sampler.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata.layers.size(), static_cast<size_t>(kLayers));
  // Workers: the download slots plus one unpacker per core; each has at most one connection
  // (one server thread).
  const int workers = 2 + static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_LE(peak.load() - baseline, 2 * workers + 2)
      << "threads during the pull: " << peak.load() << ", before: " << baseline;
  EXPECT_LE(server_->max_concurrent(), 2 + 1);  // blob downloads bounded (+ nothing else busy)
}

TEST_F(HostileRegistryTest, TricklingRegistryIsAbortedAndFreesItsSlot) {
  nlohmann::json slow = AddImage("slow:1", 1, 64 << 10, 2);
  AddImage("fast:1", 1, 1024, 3);
  const std::string slow_blob = Manifest(slow)["layers"][0]["digest"];
  Script([this, slow_blob](const Request& r) -> std::optional<Response> {
    if (!absl::EndsWith(r.path, slow_blob)) return std::nullopt;
    Response out = ServeLayout(r);
    out.trickle = absl::Milliseconds(200);  // 5 bytes/s
    return out;
  });
  RegistryConfig config;
  config.max_concurrent_downloads = 1;
  config.pull_progress_timeout_seconds = 2;
  config.pull_min_bytes_per_second = 1024;
  ImageController& c = Controller(config);
  auto r = c.Pull(Ref("slow:1"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("no progress: less than 1024 bytes/s for 2 s"));
  EXPECT_THAT(r.status().message(), HasSubstr("registry.pull_progress_timeout_seconds"));
  // The only download slot is free again.
  auto fast = c.Pull(Ref("fast:1"), {});
  EXPECT_TRUE(fast.ok()) << fast.status();
}

TEST_F(HostileRegistryTest, CancelledPullStopsItsDownloadAndFreesTheSlot) {
  nlohmann::json slow = AddImage("slow:1", 1, 64 << 10, 4);
  AddImage("fast:1", 1, 1024, 5);
  const std::string slow_blob = Manifest(slow)["layers"][0]["digest"];
  Script([this, slow_blob](const Request& r) -> std::optional<Response> {
    if (!absl::EndsWith(r.path, slow_blob)) return std::nullopt;
    Response out = ServeLayout(r);
    out.trickle = absl::Milliseconds(50);
    return out;
  });
  RegistryConfig config;
  config.max_concurrent_downloads = 1;
  ImageController& c = Controller(config);
  std::atomic<bool> cancelled{false};
  std::thread client([&] {
    // The client hangs up once the download is under way.
    WaitFor([&] { return server_->trickling() > 0; });
    cancelled = true;
  });
  auto r = c.PullCancellable(Ref("slow:1"), {}, [&] { return cancelled.load(); });
  client.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("cancelled"));
  // The transfer was dropped (the server saw the connection go), not left to run on.
  EXPECT_TRUE(WaitFor([&] { return server_->client_hang_ups() >= 1; }));
  auto fast = c.Pull(Ref("fast:1"), {});
  EXPECT_TRUE(fast.ok()) << fast.status();
}

TEST_F(HostileRegistryTest, CancelWhileWaitingForADownloadSlot) {
  nlohmann::json slow = AddImage("slow:1", 1, 64 << 10, 6);
  AddImage("queued:1", 1, 1024, 7);
  const std::string slow_blob = Manifest(slow)["layers"][0]["digest"];
  Script([this, slow_blob](const Request& r) -> std::optional<Response> {
    if (!absl::EndsWith(r.path, slow_blob)) return std::nullopt;
    Response out = ServeLayout(r);
    out.trickle = absl::Milliseconds(50);
    return out;
  });
  RegistryConfig config;
  config.max_concurrent_downloads = 1;
  ImageController& c = Controller(config);
  std::atomic<bool> stop_slow{false}, stop_queued{false};
  std::thread slow_pull([&] {
    auto r = c.PullCancellable(Ref("slow:1"), {}, [&] { return stop_slow.load(); });
    EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  });
  ASSERT_TRUE(WaitFor([&] { return server_->trickling() > 0; }));
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(300));
    stop_queued = true;
  });
  // Queued behind the slow pull for the only slot: the caller's hang-up ends the wait.
  auto queued = c.PullCancellable(Ref("queued:1"), {}, [&] { return stop_queued.load(); });
  canceller.join();
  EXPECT_EQ(queued.status().code(), absl::StatusCode::kCancelled) << queued.status();
  stop_slow = true;
  slow_pull.join();
}

TEST_F(HostileRegistryTest, DeclaredBlobLargerThanTheFreeDiskIsRefusedUnfetched) {
  nlohmann::json desc = AddImage("big:1", 1, 1024, 8);
  nlohmann::json manifest = Manifest(desc);
  manifest["layers"][0]["size"] = int64_t{1} << 60;  // an exabyte
  const std::string blob = manifest["layers"][0]["digest"];
  AddManifest("big:1", manifest);
  auto r = Controller().Pull(Ref("big:1"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("declares ", int64_t{1} << 60)));
  EXPECT_THAT(r.status().message(), HasSubstr("registry.min_free_disk_bytes"));
  EXPECT_EQ(BlobRequests(blob), 0);
}

TEST_F(HostileRegistryTest, BlobLongerThanDeclaredIsCutOffAtTheDeclaredSize) {
  nlohmann::json desc = AddImage("long:1", 1, 1024, 9);
  const std::string blob = Manifest(desc)["layers"][0]["digest"];
  Script([this, blob](const Request& r) -> std::optional<Response> {
    if (!absl::EndsWith(r.path, blob)) return std::nullopt;
    Response out = ServeLayout(r);
    out.body += Noise(8 << 20, 10);  // 8 MiB more than the descriptor says
    return out;
  });
  auto r = Controller().Pull(Ref("long:1"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("larger than the"));
  uint64_t ingest = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(tmp_.Join("images"))) {
    if (e.is_regular_file() && e.path().string().find("/ingest/") != std::string::npos) {
      ingest += e.file_size();
    }
  }
  EXPECT_EQ(ingest, 0u);
}

// Blobs redirected to another origin (a CDN) get no Authorization, whatever the scheme.
class RedirectCredentialsTest : public HostileRegistryTest,
                                public ::testing::WithParamInterface<std::string> {};

TEST_P(RedirectCredentialsTest, RedirectToAnotherOriginGetsNoCredentials) {
  const bool bearer = GetParam() == "bearer";
  AddImage("private:1", 2, 256, 11);
  ScriptedHttpServer cdn([this](const Request& r) { return ServeLayout(r); });
  Script([&](const Request& r) -> std::optional<Response> {
    Response out;
    if (r.path.rfind("/token", 0) == 0) {
      out.body = R"({"token":"secret-token"})";
      return out;
    }
    const std::string want = bearer ? "Bearer secret-token" : "Basic dXNlcjpwYXNz";  // user:pass
    auto auth = r.headers.find("authorization");
    if (auth == r.headers.end() || auth->second != want) {
      out.code = 401;
      out.headers.push_back(
          {"WWW-Authenticate",
           bearer ? absl::StrCat("Bearer realm=\"", server_->url(), "/token\",service=\"reg\"")
                  : std::string("Basic realm=\"reg\"")});
      return out;
    }
    if (r.path.find("/blobs/") != std::string::npos) {
      out.code = 307;
      out.headers.push_back(
          {"Location", absl::StrCat(cdn.url(), "/cdn/", r.path.substr(r.path.rfind('/') + 1),
                                    "?signature=abc")});
      return out;
    }
    return std::nullopt;
  });
  RegistryCredentials creds;
  creds.username = "user";
  creds.password = "pass";
  auto r = Controller().Pull(Ref("private:1"), creds);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(cdn.requests().empty());
  for (const Request& req : cdn.requests()) {
    EXPECT_FALSE(req.headers.contains("authorization"))
        << req.path << " got " << req.headers.at("authorization");
  }
  int authorized = 0;
  for (const Request& req : server_->requests())
    authorized += req.headers.contains("authorization");
  EXPECT_GT(authorized, 0);  // the registry itself did get them
}

INSTANTIATE_TEST_SUITE_P(Schemes, RedirectCredentialsTest, ::testing::Values("basic", "bearer"));

TEST_F(HostileRegistryTest, RedirectFromHttpsToHttpIsRefused) {
  AddImage("app:1", 1, 256, 12);
  std::filesystem::create_directories(tmp_.Join("certs"));
  std::string out = testing::MakeTestCertificates(tmp_.Join("certs"));
  ASSERT_EQ(out, "");
  const int port = testing::FreePort();
  testing::ChildProcess redirector;
  ASSERT_TRUE(redirector.Start(
      {"python3", std::string(PODVISOR_SOURCE_DIR) + "/test/integration/image/tls_redirector.py",
       tmp_.Join("certs/server.pem"), tmp_.Join("certs/server-key.pem"), std::to_string(port),
       server_->url()},
      tmp_.Join("redirector.log")));
  ASSERT_TRUE(testing::WaitForPort(port));
  const std::string host = absl::StrCat("127.0.0.1:", port);
  RegistryConfig config;
  config.hosts[host].ca_file = tmp_.Join("certs/ca.pem");
  auto r = Controller(config).Pull(absl::StrCat(host, "/app:1"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("https must not be downgraded to plain http"));
  EXPECT_TRUE(server_->requests().empty()) << "the plain-http server was reached";
}

}  // namespace
}  // namespace podvisor
