// Pull time and MB/s of a multi-layer image from a loopback registry, next to `skopeo copy` of
// the same image from the same registry; and unpack (tar -> tree) and erofs build rates.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/log.h"
#include "image/content_store.h"
#include "image/image_service.h"
#include "image/layer_unpacker.h"
#include "image/reference.h"
#include "image/registry_client.h"
#include "store/store.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

constexpr int kLayers = 5;
constexpr int kFilesPerLayer = 64;
constexpr size_t kFileBytes = 256 * 1024;  // half random, half text: gzip to ~55%

struct Fixture {
  testing::TempDir tmp;
  std::unique_ptr<testing::LocalRegistry> registry;
  std::string ref;
  int64_t compressed_bytes = 0;
  int64_t tar_bytes = 0;
  std::vector<std::string> layer_files;  // compressed blobs on disk for the unpack benchmark
  std::string error;

  Fixture() {
    registry = std::make_unique<testing::LocalRegistry>(tmp.Join("registry"),
                                                        testing::LocalRegistry::Options{});
    if (!registry->Start(&error)) return;
    testing::OciLayout layout(tmp.Join("layout"));
    std::mt19937_64 rng(42);
    std::vector<testing::OciLayout::Layer> layers;
    const std::string words = "the quick brown fox jumps over the lazy dog podvisor erofs ";
    for (int l = 0; l < kLayers; ++l) {
      std::vector<testing::TarEntry> entries = {testing::Dir("l" + std::to_string(l))};
      for (int f = 0; f < kFilesPerLayer; ++f) {
        std::string data(kFileBytes, '\0');
        for (size_t i = 0; i < kFileBytes / 2; i += 8) {
          uint64_t v = rng();
          std::memcpy(&data[i], &v, 8);
        }
        for (size_t i = kFileBytes / 2; i < kFileBytes; ++i)
          data[i] = words[(i * 7 + rng() % 3) % words.size()];
        entries.push_back(testing::File("l" + std::to_string(l) + "/f" + std::to_string(f), data));
      }
      auto layer = testing::OciLayout::MakeLayer(entries, testing::Compression::kGzip);
      compressed_bytes += static_cast<int64_t>(layer.blob.size());
      tar_bytes += static_cast<int64_t>(testing::MakeTar(entries).size());
      std::string path = tmp.Join("layer" + std::to_string(l) + ".tgz");
      std::ofstream(path, std::ios::binary) << layer.blob;
      layer_files.push_back(path);
      layers.push_back(std::move(layer));
    }
    auto desc = layout.AddImage(layers);
    layout.Tag("1", desc);
    ref = registry->host() + "/bench/image:1";
    error = testing::Push(layout, "1", ref);
  }
};

std::unique_ptr<Fixture>& SharedPtr() {
  static auto* f = new std::unique_ptr<Fixture>(std::make_unique<Fixture>());
  return *f;
}
Fixture& Shared() { return *SharedPtr(); }

void BM_PodvisorPull(benchmark::State& state) {
  Fixture& f = Shared();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  for (auto _ : state) {
    testing::TempDir root;
    auto records = RecordStore::Open(root.Join("db"));
    ImageController::Options options;
    options.root_dir = root.Join("images");
    options.registry.max_concurrent_downloads = state.range(0);
    auto images = ImageController::Create(options, records->get());
    auto start = std::chrono::steady_clock::now();
    auto pulled = (*images)->Pull(f.ref, {});
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!pulled.ok()) return state.SkipWithError(std::string(pulled.status().message()).c_str());
    state.SetIterationTime(secs);
  }
  state.SetBytesProcessed(state.iterations() * f.compressed_bytes);
  state.counters["image_MB"] = static_cast<double>(f.compressed_bytes) / 1e6;
}
BENCHMARK(BM_PodvisorPull)
    ->Arg(1)
    ->Arg(3)
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

// Download and verify only (into a content store), what skopeo copy does too.
void BM_PodvisorFetchOnly(benchmark::State& state) {
  Fixture& f = Shared();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  auto ref = ParseImageReference(f.ref);
  for (auto _ : state) {
    testing::TempDir root;
    ContentStore content(root.Join("content"));
    if (!content.Init().ok()) return state.SkipWithError("content store");
    RegistryClient client({});
    auto start = std::chrono::steady_clock::now();
    auto session = client.NewSession(*ref, {});
    auto manifest = session->GetManifest(ref->Object(), std::nullopt);
    if (!manifest.ok()) return state.SkipWithError("manifest");
    auto doc = ParseManifest(manifest->body, manifest->content_type);
    std::vector<Descriptor> blobs = doc->layers;
    blobs.push_back(doc->config);
    std::vector<std::thread> threads;
    std::atomic<bool> failed{false};
    for (const Descriptor& d : blobs) {
      threads.emplace_back([&, d] {
        auto w = content.NewWriter();
        if (!w.ok() || !session->FetchBlob(d, **w, nullptr).ok()) failed = true;
      });
    }
    for (auto& t : threads) t.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (failed) return state.SkipWithError("fetch failed");
    state.SetIterationTime(secs);
  }
  state.SetBytesProcessed(state.iterations() * f.compressed_bytes);
}
BENCHMARK(BM_PodvisorFetchOnly)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

void BM_SkopeoCopy(benchmark::State& state) {
  Fixture& f = Shared();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  for (auto _ : state) {
    testing::TempDir dest;
    auto start = std::chrono::steady_clock::now();
    std::string out;
    int rc = testing::Run({"skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                           "docker://" + f.ref, "oci:" + dest.Join("oci") + ":1"},
                          &out);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (rc != 0) return state.SkipWithError(out.c_str());
    state.SetIterationTime(secs);
  }
  state.SetBytesProcessed(state.iterations() * f.compressed_bytes);
}
BENCHMARK(BM_SkopeoCopy)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

// Gzip layer -> directory tree (the uncompressed tar bytes per second).
void BM_UnpackLayers(benchmark::State& state) {
  Fixture& f = Shared();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  for (auto _ : state) {
    testing::TempDir out;
    auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < f.layer_files.size(); ++i) {
      std::string dir = out.Join(std::to_string(i));
      std::filesystem::create_directories(dir);
      auto r = UnpackLayerFile(f.layer_files[i], dir);
      if (!r.ok()) return state.SkipWithError(std::string(r.status().message()).c_str());
    }
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  state.SetBytesProcessed(state.iterations() * f.tar_bytes);
}
BENCHMARK(BM_UnpackLayers)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

// Directory tree -> erofs image (mkfs.erofs, uncompressed and lz4hc).
void BM_BuildErofs(benchmark::State& state) {
  Fixture& f = Shared();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  testing::TempDir out;
  std::filesystem::create_directories(out.Join("tree"));
  for (const std::string& layer : f.layer_files) {
    if (!UnpackLayerFile(layer, out.Join("tree")).ok()) return state.SkipWithError("unpack");
  }
  int64_t image_bytes = 0;
  for (auto _ : state) {
    std::filesystem::remove(out.Join("img"));
    std::vector<std::string> argv = {"mkfs.erofs", "--quiet"};
    if (state.range(0) == 1) argv.push_back("-zlz4hc");
    argv.push_back(out.Join("img"));
    argv.push_back(out.Join("tree"));
    auto start = std::chrono::steady_clock::now();
    if (!RunCommand(argv).ok()) return state.SkipWithError("mkfs.erofs failed");
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    image_bytes = static_cast<int64_t>(std::filesystem::file_size(out.Join("img")));
  }
  state.SetBytesProcessed(state.iterations() * f.tar_bytes);
  state.counters["image_MB"] = static_cast<double>(image_bytes) / 1e6;
  state.SetLabel(state.range(0) == 1 ? "lz4hc" : "uncompressed");
}
BENCHMARK(BM_BuildErofs)
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace podvisor

int main(int argc, char** argv) {
  // PODVISOR_BENCH_LOG=debug shows each layer's unpack and erofs times.
  const char* level = std::getenv("PODVISOR_BENCH_LOG");
  podvisor::SetLogLevel(podvisor::ParseLogLevel(level ? level : "warning"));
  benchmark::Initialize(&argc, argv);
  podvisor::Fixture& f = podvisor::Shared();
  if (f.error.empty()) {
    std::printf("image: %d layers, %.1f MB compressed (gzip), %.1f MB uncompressed tar\n",
                podvisor::kLayers, f.compressed_bytes / 1e6, f.tar_bytes / 1e6);
  } else {
    std::printf("setup failed: %s\n", f.error.c_str());
  }
  benchmark::RunSpecifiedBenchmarks();
  podvisor::SharedPtr().reset();  // stops the registry
  return 0;
}
