// Pod network figures (root): CNI ADD+DEL latency with Debian's plugins, its parts (netns,
// CNI chain, tap + tc redirect), and TCP throughput / round trip from the host to a guest behind
// the tap <-> eth0 redirect, with a userspace frame pump standing in for QEMU's virtio-net.
//
//   sudo build/bench/network_bench [--benchmark_min_time=2]

#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "network/cni_exec.h"
#include "network/cni_types.h"
#include "network/netns.h"
#include "network/tap.h"
#include "test/integration/network/fake_guest.h"
#include "test/integration/network/test_network.h"

namespace podvisor {
namespace {

using testing::FakeGuest;
using testing::TestNetwork;

// Destroyed at exit, which deletes the bridge and the temp dir.
TestNetwork& Net() {
  static TestNetwork net;
  static const bool written = [] {
    net.WriteConflist();
    return true;
  }();
  (void)written;
  return net;
}

PodNetworkRequest Req(const std::string& id) {
  PodNetworkRequest r;
  r.sandbox_id = id;
  return r;
}

bool NeedRoot(benchmark::State& state) {
  if (::geteuid() == 0) return true;
  state.SkipWithError("needs root");
  return false;
}

// RunPodSandbox's network part and RemovePodSandbox's: netns, CNI ADD chain, tap; then DEL.
// phase 0: Setup + Remove; 1: Setup only (RunPodSandbox); 2: Remove only (Stop + Remove).
void BM_PodNetworkSetupRemove(benchmark::State& state) {
  if (!NeedRoot(state)) return;
  auto manager = Net().NewManager();
  const int64_t phase = state.range(0);
  int i = 0;
  for (auto _ : state) {
    std::string id = absl::StrCat("bench", i++);
    if (phase == 2) state.PauseTiming();
    absl::StatusOr<PodNetwork> pod = manager->Setup(Req(id));
    if (phase == 2) state.ResumeTiming();
    if (!pod.ok()) {
      state.SkipWithError(std::string(pod.status().message()).c_str());
      return;
    }
    if (phase == 1) state.PauseTiming();
    absl::Status s = manager->Remove(id);
    if (phase == 1) state.ResumeTiming();
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
  }
}
BENCHMARK(BM_PodNetworkSetupRemove)
    ->ArgName("phase")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Just the CNI exec part: ADD then DEL of the conflist into an existing netns.
void BM_CniAddDel(benchmark::State& state) {
  if (!NeedRoot(state)) return;
  auto list = network::LoadCniNetwork(Net().Options().cni.conf_dir);
  network::CniExec exec(Net().Options().cni.bin_dirs);
  std::string ns = Net().dir().Join("bench-cni-ns");
  (void)network::CreateNetns(ns);
  network::CniRuntimeConf rt;
  rt.container_id = "bench-cni";
  rt.netns = ns;
  for (auto _ : state) {
    absl::StatusOr<std::string> r = exec.AddNetworkList(*list, rt);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      break;
    }
    (void)exec.DelNetworkList(*list, rt, *r);
  }
  (void)network::RemoveNetns(ns);
}
BENCHMARK(BM_CniAddDel)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_NetnsCreateRemove(benchmark::State& state) {
  if (!NeedRoot(state)) return;
  std::string ns = Net().dir().Join("bench-ns");
  for (auto _ : state) {
    (void)network::CreateNetns(ns);
    (void)network::RemoveNetns(ns);
  }
}
BENCHMARK(BM_NetnsCreateRemove)->Unit(benchmark::kMillisecond)->UseRealTime();

// The tap + tc redirect step alone: attach (Setup) or detach (Teardown).
void BM_TapAttachDetach(benchmark::State& state) {
  if (!NeedRoot(state)) return;
  auto manager = Net().NewManager();
  absl::StatusOr<PodNetwork> pod = manager->Setup(Req("bench-tap"));
  if (!pod.ok()) {
    state.SkipWithError(std::string(pod.status().message()).c_str());
    return;
  }
  (void)network::DetachTap(pod->netns_path, "eth0", pod->tap_name);
  const bool attach = state.range(0) == 1;
  for (auto _ : state) {
    if (!attach) state.PauseTiming();
    (void)network::AttachTap(pod->netns_path, "eth0", pod->tap_name);
    if (!attach) state.ResumeTiming();
    if (attach) state.PauseTiming();
    (void)network::DetachTap(pod->netns_path, "eth0", pod->tap_name);
    if (attach) state.ResumeTiming();
  }
  (void)manager->Remove("bench-tap");
}
BENCHMARK(BM_TapAttachDetach)
    ->ArgName("attach")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// A pod with a fake guest behind its tap, or (redirect=false) a listener straight in the pod's
// netns on eth0 with the tap removed: the CNI path without the VM hop, for comparison.
struct Target {
  std::unique_ptr<PodNetworkManager> manager;
  PodNetwork pod;
  std::unique_ptr<FakeGuest> guest;
  int listener = -1;
  int port = 0;
};

std::unique_ptr<Target> MakeTarget(const std::string& id, bool redirect, std::string* error) {
  auto t = std::make_unique<Target>();
  t->manager = Net().NewManager();
  absl::StatusOr<PodNetwork> pod = t->manager->Setup(Req(id));
  if (!pod.ok()) {
    *error = std::string(pod.status().message());
    return nullptr;
  }
  t->pod = *pod;
  absl::StatusOr<int> fd;
  if (redirect) {
    auto guest = FakeGuest::Start(t->pod, Net().dir().path());
    if (!guest.ok()) {
      *error = std::string(guest.status().message());
      return nullptr;
    }
    t->guest = std::move(*guest);
    fd = t->guest->Socket(AF_INET, SOCK_STREAM);
  } else {
    (void)network::DetachTap(t->pod.netns_path, "eth0", t->pod.tap_name);
    int raw = -1;
    (void)network::RunInNetns(t->pod.netns_path, [&] {
      raw = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      return absl::OkStatus();
    });
    fd = raw;
  }
  if (!fd.ok() || *fd < 0) {
    *error = "listener socket";
    return nullptr;
  }
  t->listener = *fd;
  absl::StatusOr<int> port = testing::ListenTcp(t->listener);
  t->port = port.ok() ? *port : 0;
  return t;
}

void Cleanup(std::unique_ptr<Target> t) {
  if (!t) return;
  ::close(t->listener);
  std::string id = t->pod.sandbox_id;
  t->guest.reset();
  (void)t->manager->Remove(id);
}

// Host -> pod TCP stream; bytes/s is the figure.
void BM_TcpThroughput(benchmark::State& state) {
  if (!NeedRoot(state)) return;
  bool redirect = state.range(0) == 1;
  std::string error;
  auto t = MakeTarget(redirect ? "bench-tput-tap" : "bench-tput-veth", redirect, &error);
  if (!t) {
    state.SkipWithError(error.c_str());
    return;
  }
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!testing::ConnectTcp(client, t->pod.PrimaryIp(), t->port).ok()) {
    state.SkipWithError("connect");
    Cleanup(std::move(t));
    return;
  }
  absl::StatusOr<int> server = testing::AcceptTcp(t->listener);
  std::thread sink([&] {
    std::vector<char> buf(1 << 16);
    while (::recv(*server, buf.data(), buf.size(), 0) > 0) {
    }
  });
  const std::string chunk(1 << 20, 'x');
  for (auto _ : state) {
    (void)testing::WriteAll(client, chunk);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * chunk.size());
  ::shutdown(client, SHUT_WR);
  sink.join();
  ::close(client);
  ::close(*server);
  Cleanup(std::move(t));
}
BENCHMARK(BM_TcpThroughput)
    ->ArgName("tap_redirect")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2);

// Host <-> pod 1-byte TCP ping-pong.
void BM_TcpRoundTrip(benchmark::State& state) {
  if (!NeedRoot(state)) return;
  bool redirect = state.range(0) == 1;
  std::string error;
  auto t = MakeTarget(redirect ? "bench-rtt-tap" : "bench-rtt-veth", redirect, &error);
  if (!t) {
    state.SkipWithError(error.c_str());
    return;
  }
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  (void)testing::ConnectTcp(client, t->pod.PrimaryIp(), t->port);
  absl::StatusOr<int> server = testing::AcceptTcp(t->listener);
  ::setsockopt(*server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::thread echo([&] {
    char c;
    while (::recv(*server, &c, 1, 0) == 1 && ::send(*server, &c, 1, MSG_NOSIGNAL) == 1) {
    }
  });
  char c = 'p';
  for (auto _ : state) {
    if (::send(client, &c, 1, MSG_NOSIGNAL) != 1 || ::recv(client, &c, 1, 0) != 1) {
      state.SkipWithError("ping-pong broke");
      break;
    }
  }
  ::shutdown(client, SHUT_RDWR);
  ::close(client);
  echo.join();
  ::close(*server);
  Cleanup(std::move(t));
}
BENCHMARK(BM_TcpRoundTrip)
    ->ArgName("tap_redirect")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace podvisor

int main(int argc, char** argv) {
  podvisor::SetLogLevel(podvisor::LogLevel::kWarning);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
