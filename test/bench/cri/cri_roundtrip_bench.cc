// One CRI round trip over the unix socket to the real podvisord (Version, Status,
// ListPodSandbox), beside the baseline of the same call to a bare gRPC server in this process
// that answers Version with a constant: the difference is what podvisord adds to gRPC itself.

#include "test/support/cri_client.h"  // first: see daemon_e2e_test.cc

#include <cstdio>
#include <memory>

#include "benchmark/benchmark.h"
#include "test/support/daemon_process.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {
namespace {

namespace v1 = runtime::v1;

class BareRuntime final : public v1::RuntimeService::Service {
  grpc::Status Version(grpc::ServerContext*, const v1::VersionRequest*,
                       v1::VersionResponse* response) override {
    response->set_runtime_name("baseline");
    return grpc::Status::OK;
  }
};

struct Fixture {
  TempDir dir;
  std::unique_ptr<DaemonProcess> daemon;
  std::unique_ptr<CriClient> client;
  BareRuntime bare_service;
  std::unique_ptr<grpc::Server> bare_server;
  std::unique_ptr<CriClient> bare_client;

  Fixture() {
    DaemonProcess::Options o;
    o.root_dir = dir.Join("root");
    o.state_dir = dir.Join("state");
    o.socket_path = dir.Join("podvisor.sock");
    o.extra_args = {"--log-level", "info"};
    daemon = std::make_unique<DaemonProcess>(o);
    std::string error;
    if (!daemon->Start(&error)) {
      std::fprintf(stderr, "cannot start podvisord: %s\n", error.c_str());
      std::abort();
    }
    client = std::make_unique<CriClient>(daemon->endpoint());

    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir.Join("bare.sock"), grpc::InsecureServerCredentials());
    builder.RegisterService(&bare_service);
    bare_server = builder.BuildAndStart();
    bare_client = std::make_unique<CriClient>("unix://" + dir.Join("bare.sock"));
  }
  ~Fixture() {
    bare_server->Shutdown();
    daemon->Stop();
  }
};

Fixture* g_fixture = nullptr;

Fixture& Shared() {
  if (g_fixture == nullptr) g_fixture = new Fixture();
  return *g_fixture;
}

void BM_BaselineBareGrpcVersion(benchmark::State& state) {
  auto& f = Shared();
  for (auto _ : state) {
    grpc::ClientContext ctx;
    v1::VersionResponse resp;
    if (!f.bare_client->runtime().Version(&ctx, {}, &resp).ok()) state.SkipWithError("failed");
  }
}
BENCHMARK(BM_BaselineBareGrpcVersion)->Unit(benchmark::kMicrosecond);

void BM_PodvisordVersion(benchmark::State& state) {
  auto& f = Shared();
  for (auto _ : state) {
    grpc::ClientContext ctx;
    v1::VersionResponse resp;
    if (!f.client->runtime().Version(&ctx, {}, &resp).ok()) state.SkipWithError("failed");
  }
}
BENCHMARK(BM_PodvisordVersion)->Unit(benchmark::kMicrosecond);

void BM_PodvisordStatus(benchmark::State& state) {
  auto& f = Shared();
  for (auto _ : state) {
    grpc::ClientContext ctx;
    v1::StatusResponse resp;
    if (!f.client->runtime().Status(&ctx, {}, &resp).ok()) state.SkipWithError("failed");
  }
}
BENCHMARK(BM_PodvisordStatus)->Unit(benchmark::kMicrosecond);

void BM_PodvisordListPodSandbox(benchmark::State& state) {
  auto& f = Shared();
  for (auto _ : state) {
    grpc::ClientContext ctx;
    v1::ListPodSandboxResponse resp;
    if (!f.client->runtime().ListPodSandbox(&ctx, {}, &resp).ok()) state.SkipWithError("failed");
  }
}
BENCHMARK(BM_PodvisordListPodSandbox)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace podvisor::testing

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  delete podvisor::testing::g_fixture;  // stops the daemon it started
  return 0;
}
