// podvisor-monitor: owns one host container's stdio, log and exit code (host-runtime/monitor.h).
//
// `podvisor-monitor --hide-unified-cgroup -- /abs/cmd ...` runs a command (crun) in a mount
// namespace of its own where the cgroup v2 mount of a hybrid hierarchy is absent: crun refuses
// hybrid hosts whose v2 side holds controllers ("cgroups in hybrid mode not supported"), and
// manages the v1 controllers alone once it cannot see it. Only that mount is made private
// (before its unmount, which then cannot propagate); every other mount keeps its propagation,
// so Bidirectional mounts still reach the host.

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "host-runtime/monitor.h"

namespace {

int HideUnifiedAndExec(int argc, char** argv) {
  if (argc < 4 || std::strcmp(argv[2], "--") != 0 || argv[3][0] != '/') {
    std::fprintf(stderr, "usage: podvisor-monitor --hide-unified-cgroup -- /abs/cmd ...\n");
    return 2;
  }
  const char* unified = "/sys/fs/cgroup/unified";
  if (::unshare(CLONE_NEWNS) != 0) {
    std::fprintf(stderr, "podvisor-monitor: unshare: %s\n", std::strerror(errno));
    return 1;
  }
  if (::mount(nullptr, unified, nullptr, MS_PRIVATE, nullptr) == 0) ::umount2(unified, MNT_DETACH);
  ::execv(argv[3], argv + 3);
  std::fprintf(stderr, "podvisor-monitor: exec %s: %s\n", argv[3], std::strerror(errno));
  return 127;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--hide-unified-cgroup") == 0) {
    return HideUnifiedAndExec(argc, argv);
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<podvisor::host::MonitorOptions> options = podvisor::host::ParseMonitorArgs(args);
  if (!options.ok()) {
    std::fprintf(stderr, "podvisor-monitor: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  return podvisor::host::RunMonitor(*options);
}
