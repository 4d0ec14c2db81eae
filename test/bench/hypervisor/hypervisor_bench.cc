// Prints what a pod VM costs with the libvirt backend: create -> first byte from the guest's
// /init on the agent port (the test init answers at once, so this is the floor of agent-ready),
// the Create call alone, destroy, and the PSS of an idle QEMU process.
//
// usage: hypervisor_bench [iterations=10] [uri]   (uri default: embedded driver in a temp root)
// Runs as root; uses the test guest image (ninja podvisor_test_guest_image), or the image in
// $PODVISOR_BENCH_GUEST_DIR (with PODVISOR_BENCH_AGENT_HELLO=1 for the real agent, see WaitReady).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "hypervisor/hypervisor.h"
#include "test/integration/hypervisor/guest_channel.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

struct Figures {
  std::vector<double> values;
  void Add(double v) { values.push_back(v); }
  double Percentile(double p) {
    std::sort(values.begin(), values.end());
    if (values.empty()) return 0;
    size_t i = static_cast<size_t>(p * (values.size() - 1) + 0.5);
    return values[i];
  }
  void Print(const char* name, const char* unit) {
    std::printf("%-34s median %8.1f %s   p90 %8.1f %s   min %8.1f   max %8.1f   (n=%zu)\n", name,
                Percentile(0.5), unit, Percentile(0.9), unit, Percentile(0), Percentile(1),
                values.size());
  }
};

long PssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  std::string line;
  while (std::getline(in, line)) {
    long kb = 0;
    if (absl::StartsWith(line, "Pss:") && std::sscanf(line.c_str(), "Pss: %ld", &kb) == 1) {
      return kb;
    }
  }
  return -1;
}

// The guest is ready when test_init's READY line arrives, or, with PODVISOR_BENCH_AGENT_HELLO=1
// (an image whose /init is the real podvisor-agent), when the agent answers the protocol's
// HelloRequest: Frame{id: 1, request: {hello: {max_version: 1, min_version: 1}}}.
absl::Status WaitReady(podvisor::testing::GuestChannel& channel) {
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  const char* hello = std::getenv("PODVISOR_BENCH_AGENT_HELLO");
  if (hello == nullptr || std::string(hello) != "1") return channel.ReadLine(deadline).status();
  static const char kHello[] = {0, 0, 0, 10, 0x08, 0x01, 0x12, 0x06, 0x0a, 0x04, 0x08, 0x01,
                                0x10, 0x01};
  if (auto s = channel.SendBytes(std::string(kHello, sizeof(kHello))); !s.ok()) return s;
  auto length = channel.ReadBytes(4, deadline);
  if (!length.ok()) return length.status();
  size_t n = 0;
  for (unsigned char c : *length) n = n << 8 | c;
  return channel.ReadBytes(n, deadline).status();
}

int Main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 10;
  podvisor::testing::TempDir dir;
  LibvirtHypervisorOptions options;
  if (argc > 2) {
    options.uri = argv[2];
  } else {
    options.embed_root = dir.Join("libvirt");
  }
  options.accelerator = "auto";
  const char* guest_dir = std::getenv("PODVISOR_BENCH_GUEST_DIR");
  std::string guest = guest_dir != nullptr ? guest_dir : PODVISOR_TEST_GUEST_DIR;
  options.kernel = guest + "/vmlinux";
  options.initrd = guest + "/initrd.img";
  auto hv = NewLibvirtHypervisor(options);
  absl::Time t0 = absl::Now();
  if (auto s = (*hv)->Init(); !s.ok()) {
    std::fprintf(stderr, "init: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("Init (connect, accelerator probe, warm-up create): %.0f ms, accelerator %s\n",
              absl::ToDoubleMilliseconds(absl::Now() - t0), (*hv)->Accelerator().c_str());

  auto spec_for = [&](const std::string& id) {
    VmSpec spec;
    spec.id = id;
    spec.memory_mib = 512;
    spec.kernel = options.kernel;
    spec.initrd = options.initrd;
    spec.state_dir = dir.Join(id);
    mkdir(spec.state_dir.c_str(), 0700);
    spec.agent_socket = spec.state_dir + "/agent.sock";
    spec.console_log = spec.state_dir + "/console.log";
    return spec;
  };

  Figures create_call, ready, destroy, pss;
  for (int i = 0; i < iterations; ++i) {
    VmSpec spec = spec_for(absl::StrCat("bench", i));
    absl::Time start = absl::Now();
    if (auto s = (*hv)->Create(spec); !s.ok()) {
      std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
      return 1;
    }
    create_call.Add(absl::ToDoubleMilliseconds(absl::Now() - start));
    auto channel = podvisor::testing::GuestChannel::Connect(spec.agent_socket,
                                                            absl::Now() + absl::Seconds(60));
    absl::Status guest_ready = channel.ok() ? WaitReady(*channel) : channel.status();
    if (!guest_ready.ok()) {
      std::fprintf(stderr, "guest: %s\n", guest_ready.ToString().c_str());
      return 1;
    }
    ready.Add(absl::ToDoubleMilliseconds(absl::Now() - start));
    start = absl::Now();
    (*hv)->Destroy(spec.id).IgnoreError();
    destroy.Add(absl::ToDoubleMilliseconds(absl::Now() - start));
  }

  // Idle memory: 4 guests booted and left alone for a few seconds.
  std::vector<std::string> ids;
  std::vector<podvisor::testing::GuestChannel> channels;
  for (int i = 0; i < 4; ++i) {
    VmSpec spec = spec_for(absl::StrCat("idle", i));
    if (!(*hv)->Create(spec).ok()) return 1;
    auto channel = podvisor::testing::GuestChannel::Connect(spec.agent_socket,
                                                            absl::Now() + absl::Seconds(60));
    if (!channel.ok() || !WaitReady(*channel).ok()) return 1;
    ids.push_back(spec.id);
    channels.push_back(std::move(*channel));
  }
  absl::SleepFor(absl::Seconds(3));
  for (const auto& id : ids) {
    auto status = (*hv)->Status(id);
    if (status.ok() && status->qemu_pid > 0) pss.Add(PssKb(status->qemu_pid) / 1024.0);
  }

  // Disk hot-plug: AttachDisk -> the guest lists the new sdX; then the guest killed from outside
  // -> exit callback.
  Figures attach, attach_call, kill_event;
  absl::Mutex mu;
  std::map<std::string, absl::Time> died;
  (*hv)->SetExitCallback([&](const VmExitEvent& e) {
    absl::MutexLock lock(&mu);
    died[e.id] = absl::Now();
  });
  std::string disk = dir.Join("disk.img");
  std::ofstream(disk).close();
  if (truncate(disk.c_str(), 16 << 20) != 0) return 1;
  const bool test_init = std::getenv("PODVISOR_BENCH_AGENT_HELLO") == nullptr;
  for (size_t i = 0; test_init && i < ids.size(); ++i) {
    absl::Time start = absl::Now();
    if (!(*hv)->AttachDisk(ids[i], {"d", disk, true, "raw", 1}).ok()) return 1;
    attach_call.Add(absl::ToDoubleMilliseconds(absl::Now() - start));
    for (;;) {
      auto blk = channels[i].Ask("blk", absl::Seconds(30));
      if (!blk.ok()) return 1;
      if (absl::StrContains(*blk, "sda")) break;
    }
    attach.Add(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  for (const auto& id : ids) {
    pid_t pid = (*hv)->Status(id)->qemu_pid;
    absl::Time start = absl::Now();
    kill(pid, SIGKILL);
    for (;;) {
      absl::SleepFor(absl::Microseconds(200));
      absl::MutexLock lock(&mu);
      if (died.count(id) > 0) {
        kill_event.Add(absl::ToDoubleMilliseconds(died[id] - start));
        break;
      }
      if (absl::Now() - start > absl::Seconds(30)) break;
    }
  }
  for (const auto& id : ids) (*hv)->Destroy(id).IgnoreError();

  std::printf("uri %s, 1 vCPU, 512 MiB, %d iterations\n",
              options.uri.empty() ? "qemu:///embed" : options.uri.c_str(), iterations);
  create_call.Print("Create call (virDomainCreateXML)", "ms");
  ready.Print("create -> first guest byte", "ms");
  destroy.Print("Destroy", "ms");
  pss.Print("idle QEMU PSS (4 running)", "MiB");
  attach_call.Print("AttachDisk call", "ms");
  attach.Print("AttachDisk -> guest sees the disk", "ms");
  kill_event.Print("QEMU SIGKILL -> exit callback", "ms");
  return 0;
}

}  // namespace
}  // namespace podvisor

int main(int argc, char** argv) { return podvisor::Main(argc, argv); }
