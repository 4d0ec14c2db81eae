#pragma once

// PID 1 duties of the guest: the early mounts, kernel modules, and powering off.

#include <string>
#include <vector>

#include "agent/result.h"

namespace podvisor::agent {

// The kernel's initramfs is the root of the mount tree, which pivot_root(2) cannot leave, so
// crun could only chroot. Copies the initramfs into a tmpfs, frees the original, and makes the
// tmpfs the root (mount move + chroot, as switch_root does). /init and the kernel modules are
// left behind: call after LoadKernelModules and before the other mounts. Does nothing when / is
// not the initramfs. On success *old_root_fd refers to the old root, whose files still take
// memory until FreeOldRoot(fd) deletes them (it takes ~40 ms under TCG: call it off the boot
// path, on a thread started after ProcessReaper::Start()).
Error MoveRootToTmpfs(int* old_root_fd);
void FreeOldRoot(int old_root_fd);

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
