#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "pod-sandbox/agent_client.h"
#include "test/support/agent_process.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

// One agent process and one client for all benchmarks.
struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<testing::AgentProcess> agent;
  std::unique_ptr<AgentClient> client;

  Fixture() {
    const std::string socket = dir.Join("agent.sock");
    agent = std::make_unique<testing::AgentProcess>(
        std::vector<std::string>{"--channel", "listen:" + socket, "--root", dir.path()},
        std::vector<std::string>{}, dir.Join("agent.log"));
    std::string error;
    if (!agent->Start(&error)) abort();
    auto c = AgentClient::Connect(socket, AgentClient::Options{});
    if (!c.ok()) abort();
    client = std::move(*c);
  }
  static Fixture& Get() {
    static Fixture* f = new Fixture();
    return *f;
  }
};

void BM_PingRoundTrip(benchmark::State& state) {
  AgentClient& client = *Fixture::Get().client;
  for (auto _ : state) {
    if (!client.Ping(absl::Seconds(30)).ok()) state.SkipWithError("ping failed");
  }
}
BENCHMARK(BM_PingRoundTrip)->UseRealTime();

void BM_PingConcurrent(benchmark::State& state) {
  AgentClient& client = *Fixture::Get().client;
  for (auto _ : state) {
    if (!client.Ping(absl::Seconds(30)).ok()) state.SkipWithError("ping failed");
  }
}
BENCHMARK(BM_PingConcurrent)->Threads(8)->UseRealTime();

// Bytes sent to a guest port and echoed back, in chunks of state.range(0).
void BM_PortForwardEcho(benchmark::State& state) {
  AgentClient& client = *Fixture::Get().client;
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  listen(listener, 1);
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::thread echo([listener] {
    int c = accept(listener, nullptr, nullptr);
    char buf[65536];
    ssize_t n;
    while ((n = read(c, buf, sizeof(buf))) > 0) (void)!write(c, buf, n);
    close(c);
  });
  std::mutex mu;
  std::condition_variable cv;
  size_t received = 0;
  bool eof = false;
  const uint32_t stream = client.AllocateStreamId();
  client.SetStreamCallback(stream, [&](absl::string_view d, bool e) {
    std::lock_guard<std::mutex> lock(mu);
    received += d.size();
    eof |= e;
    cv.notify_all();
  });
  if (!client.PortForward(ntohs(addr.sin_port), stream, absl::Seconds(30)).ok()) {
    state.SkipWithError("port forward failed");
  }
  const std::string chunk(static_cast<size_t>(state.range(0)), 'x');
  size_t sent = 0;
  for (auto _ : state) {
    if (!client.WriteStream(stream, chunk, false).ok()) {
      state.SkipWithError("stream write failed");
      break;
    }
    sent += chunk.size();
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return received == sent; });
  }
  state.SetBytesProcessed(static_cast<int64_t>(sent));
  if (!client.WriteStream(stream, "", true).ok()) {
    state.SkipWithError("stream end failed");
  } else {
    // The callback refers to this frame: wait for the guest's end of the stream.
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return eof; });
  }
  echo.join();
  close(listener);
}
BENCHMARK(BM_PortForwardEcho)->Arg(4096)->Arg(65536)->Arg(1 << 20)->UseRealTime();

}  // namespace
}  // namespace podvisor

BENCHMARK_MAIN();
