#pragma once

// PID 1 duties of the guest: the early mounts, kernel modules, and powering off.

#include <string>
#include <vector>

#include "agent/result.h"

namespace podvisor::agent {

// Mounts proc, sysfs, devtmpfs, devpts, /dev/shm, cgroup2, /run and /tmp (each one that is not
// mounted yet), and the /dev/fd, /dev/std* links. Failures are logged; returns the first one.
Error MountEarlyFilesystems();

// Loads each module listed (one .ko path per line, '#' comments, dependency order) in
// `load_order_file` with finit_module. A missing file loads nothing; a module already loaded is
// fine; other failures are logged and returned after trying the rest.
Error LoadKernelModules(const std::string& load_order_file);

// Parses a load-order file's text into paths (exposed for tests).
std::vector<std::string> ParseModuleList(const std::string& text);

// sync(), then reboot(RB_POWER_OFF) (or RB_AUTOBOOT). Does not return on success.
void PowerOff(bool reboot);

}  // namespace podvisor::agent
