// Figures for the streaming server with the fake runtime (no containers): the round trip of a tiny
// exec as kubelet or crictl drives it (register the URL, connect, upgrade, open the streams, run,
// read the status), and the throughput of a stream through an echo (`cat`) and of a download.
//
// Run: bench/streaming_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <thread>

#include "streaming/streaming_server.h"
#include "test/fakes/fake_streaming_runtime.h"
#include "test/unit/streaming/streaming_test_client.h"

namespace podvisor::streaming {
namespace {

struct Fixture {
  Fixture() {
    server = std::move(*StreamingServer::Start(StreamingServerOptions{}, &runtime));
  }
  ~Fixture() { server->Stop(); }
  testing::FakeStreamingRuntime runtime;
  std::unique_ptr<StreamingServer> server;
};

Fixture& Shared() {
  static Fixture* fixture = new Fixture();
  return *fixture;
}

ExecRequest Request(std::vector<std::string> cmd, bool in = false) {
  return ExecRequest{"c1", std::move(cmd), false, in, true, true};
}

void BM_SpdyExecRoundTrip(benchmark::State& state) {
  Fixture& f = Shared();
  for (auto _ : state) {
    testing::ExecResult result =
        testing::SpdyExec(*f.server->GetExecUrl(Request({"echo", "hi"})), {});
    if (result.out != "hi\n") state.SkipWithError("bad output");
  }
}
BENCHMARK(BM_SpdyExecRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_WebSocketExecRoundTrip(benchmark::State& state) {
  Fixture& f = Shared();
  for (auto _ : state) {
    testing::WsTestClient client;
    client.Connect(*f.server->GetExecUrl(Request({"echo", "hi"})), {"v5.channel.k8s.io"});
    if (testing::ChannelData(client.ReadUntilClose(), 1) != "hi\n") {
      state.SkipWithError("bad output");
    }
  }
}
BENCHMARK(BM_WebSocketExecRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Full duplex: stdin -> cat -> stdout, 64 KiB writes.
void BM_SpdyEchoThroughput(benchmark::State& state) {
  Fixture& f = Shared();
  const size_t total = static_cast<size_t>(state.range(0)) << 20;
  const std::string chunk(64 * 1024, 'x');
  for (auto _ : state) {
    testing::SpdyTestClient client;
    client.Connect(*f.server->GetExecUrl(Request({"cat"}, true)), {"v4.channel.k8s.io"});
    client.DiscardData(true);
    uint32_t error = client.OpenStream({{"streamtype", "error"}});
    uint32_t in = client.OpenStream({{"streamtype", "stdin"}});
    uint32_t out = client.OpenStream({{"streamtype", "stdout"}});
    client.OpenStream({{"streamtype", "stderr"}});
    client.WaitReply(out);
    for (size_t sent = 0; sent < total; sent += chunk.size()) client.Send(in, chunk);
    client.Send(in, "", true);
    if (!client.WaitReceived(out, total)) state.SkipWithError("short echo");
    client.ReadAll(error);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * total));
}
BENCHMARK(BM_SpdyEchoThroughput)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

// Download: the runtime writes 64 KiB chunks to stdout as fast as the client reads.
void BM_SpdyDownloadThroughput(benchmark::State& state) {
  Fixture& f = Shared();
  const size_t total = static_cast<size_t>(state.range(0)) << 20;
  for (auto _ : state) {
    testing::SpdyTestClient client;
    client.Connect(*f.server->GetExecUrl(Request({"bytes", std::to_string(total)})),
                   {"v4.channel.k8s.io"});
    client.DiscardData(true);
    uint32_t error = client.OpenStream({{"streamtype", "error"}});
    uint32_t out = client.OpenStream({{"streamtype", "stdout"}});
    client.OpenStream({{"streamtype", "stderr"}});
    if (!client.WaitReceived(out, total)) state.SkipWithError("short download");
    client.ReadAll(error);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * total));
}
BENCHMARK(BM_SpdyDownloadThroughput)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_WebSocketDownloadThroughput(benchmark::State& state) {
  Fixture& f = Shared();
  const size_t total = static_cast<size_t>(state.range(0)) << 20;
  for (auto _ : state) {
    testing::WsTestClient client;
    client.Connect(*f.server->GetExecUrl(Request({"bytes", std::to_string(total)})),
                   {"v5.channel.k8s.io"});
    size_t got = 0;
    for (;;) {
      std::string m = client.ReadMessage();
      if (m.empty()) break;
      if (m[0] == 1) got += m.size() - 1;
      if (m[0] == 3) break;
    }
    if (got != total) state.SkipWithError("short download");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * total));
}
BENCHMARK(BM_WebSocketDownloadThroughput)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

// Many sessions at once: 16 concurrent tiny execs per iteration.
void BM_SpdyConcurrentExecs(benchmark::State& state) {
  Fixture& f = Shared();
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int i = 0; i < 16; ++i) {
      threads.emplace_back([&] {
        testing::SpdyExec(*f.server->GetExecUrl(Request({"echo", "hi"})), {});
      });
    }
    for (auto& t : threads) t.join();
  }
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_SpdyConcurrentExecs)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace podvisor::streaming

BENCHMARK_MAIN();
