// What the benches share: a series of timings and its percentiles, the PSS of a process and of a
// pod's virtiofsd, the host's available memory, and the busybox image layer they run.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "test/support/daemon_process.h"
#include "test/support/oci_image_builder.h"
#include "test/support/temp_dir.h"

namespace podvisor::testing {

// Figures measured of one operation (milliseconds, unless the bench says otherwise).
struct Series {
  std::vector<double> ms;

  void Add(double v) { ms.push_back(v); }
  // The nearest-rank percentile, p in [0, 1]; 0 for an empty series.
  double Percentile(double p) const;
  double Sum() const;
  // "<name>  median … ms   p90 … ms   (n=…)" on stdout.
  void Print(const char* name) const;
};

// How long fn() took, in milliseconds.
template <typename Fn>
double Timed(Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// The proportional set size of a process (kB, from smaps_rollup), -1 when it cannot be read.
long PssKib(int pid);
// The PSS of the virtiofsd serving a cold-booted pod (its command line names the pod's id
// prefix `id16`), 0 when there is none (a cloned pod shares over QEMU's own 9p server).
long VirtiofsdPssKib(const std::string& id16);
// MemAvailable of /proc/meminfo (kB), -1 when it cannot be read.
long MemAvailableKib();

// The whole content of a file ("" when it cannot be read).
std::string Slurp(const std::string& path);

// One gzip layer of the host's static /bin/busybox with the applets the benches run (sh, true,
// sleep, echo, yes, head) as symlinks in /bin.
OciLayout::Layer BusyboxLayer();

class CriClient;

// What a bench's podvisord left after every pod was removed through the CRI, one line each:
// QEMU processes whose command line names `dir` (given 5 s to exit), sandbox and container
// records, and entries of <dir>/st/vm.
std::vector<std::string> PodsLeftBehind(CriClient& cri, const TempDir& dir);

// The files of a bench's own podvisord under `dir`: <dir>/cni/10-<bridge>.conflist (a bridge
// network `bridge` on `subnet`, host-local IPAM state in <dir>/ipam, loopback), and
// <dir>/config.yaml (TCG, templates built in `template_dir`, docker.io mirrored by
// `registry_host`). Returns the daemon's options: root, state, socket, config and log under
// `dir`, logging at info.
DaemonProcess::Options WriteTemplateDaemonFiles(const TempDir& dir, const std::string& bridge,
                                                const std::string& subnet,
                                                const std::string& template_dir,
                                                const std::string& registry_host);

}  // namespace podvisor::testing
