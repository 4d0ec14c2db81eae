// The cost of one durable state change: a SQLite transaction (WAL, synchronous=FULL), as the
// store does it, beside the alternative it was chosen over, a file written, fsync'd and renamed
// into place with the directory fsync'd (common/fs.h WriteFileAtomic).

#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "common/fs.h"
#include "store/store.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

const std::string kRecord(600, 'r');  // about the size of a sandbox record

void BM_SqlitePut(benchmark::State& state) {
  testing::TempDir dir;
  auto store = RecordStore::Open(dir.Join("bench.db"));
  int i = 0;
  for (auto _ : state) {
    if (!(*store)->Put("sandbox", absl::StrCat("id", i++ % 64), kRecord).ok()) {
      state.SkipWithError("put failed");
    }
  }
}
BENCHMARK(BM_SqlitePut)->Unit(benchmark::kMicrosecond);

void BM_SqliteTwoRecordTransaction(benchmark::State& state) {
  testing::TempDir dir;
  auto store = RecordStore::Open(dir.Join("bench.db"));
  int i = 0;
  for (auto _ : state) {
    std::string id = absl::StrCat("id", i++ % 64);
    if (!(*store)->Apply({{"sandbox", id, kRecord}, {"container", id, kRecord}}).ok()) {
      state.SkipWithError("apply failed");
    }
  }
}
BENCHMARK(BM_SqliteTwoRecordTransaction)->Unit(benchmark::kMicrosecond);

void BM_BaselineFsyncRenameFile(benchmark::State& state) {
  testing::TempDir dir;
  int i = 0;
  for (auto _ : state) {
    if (!WriteFileAtomic(dir.Join(absl::StrCat("id", i++ % 64)), kRecord).ok()) {
      state.SkipWithError("write failed");
    }
  }
}
BENCHMARK(BM_BaselineFsyncRenameFile)->Unit(benchmark::kMicrosecond);

void BM_SqliteList100(benchmark::State& state) {
  testing::TempDir dir;
  auto store = RecordStore::Open(dir.Join("bench.db"));
  for (int i = 0; i < 100; ++i) (void)(*store)->Put("sandbox", absl::StrCat("id", i), kRecord);
  for (auto _ : state) benchmark::DoNotOptimize((*store)->List("sandbox"));
}
BENCHMARK(BM_SqliteList100)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace podvisor

BENCHMARK_MAIN();
