// Host-side helpers of the libvirt backend that need no libvirt: the host's libvirt-qemu
// account, the host's TSC frequency, and running a call inside a network namespace.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace podvisor {

// Runs argv (looked up in PATH) and waits for it; an error unless it exits 0.
absl::Status RunCommand(const std::vector<std::string>& argv);

// libvirt's QEMU driver refuses to work unless a libvirt-qemu user and group exist, even when
// qemu.conf says root: creates them when missing.
absl::Status EnsureQemuUser();

// The host TSC frequency in kHz, or 0 when unknown.
uint64_t ReadHostTscKhz();

// Runs `fn` on a new thread that has joined the network namespace at `netns_path` (directly when
// the path is empty). Not used for cgroups: threads libvirt starts from that thread would stay in
// them.
absl::Status RunInNetns(const std::string& netns_path, const std::function<absl::Status()>& fn);

// Moves process `pid` (all its threads) into each cgroup of `cgroup_dirs` (cgroup.procs).
absl::Status MoveToCgroups(pid_t pid, const std::vector<std::string>& cgroup_dirs);

// Writes `value` to a cgroupfs or procfs control file in place.
absl::Status WriteControlFile(const std::string& path, const std::string& value);

}  // namespace podvisor
