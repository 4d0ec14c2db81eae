#pragma once

// Small helpers of the guest's container manager: files, ids, time, cgroup stat files.

#include <cstdint>
#include <string>

#include "agent/result.h"

namespace podvisor::agent {

uint64_t NowNs();
// A container or exec id the agent accepts (it names directories): [A-Za-z0-9_.-], 1..128.
bool IsValidId(const std::string& id);
std::string Slurp(const std::string& path);
Error WriteWhole(const std::string& path, const std::string& data);
// The kernel's initial rootfs (ramfs or tmpfs, the root of the mount tree).
bool RootIsInitramfs();
// mkdir -p (the guest has no /bin/mkdir).
Error MakeDirs(const std::string& path);
// rm -rf that stays on one filesystem and never follows symlinks.
void RemoveTree(const std::string& path);
// "key value" lines (cpu.stat, memory.stat, memory.events).
uint64_t StatField(const std::string& text, const std::string& key);
void CloseFd(int* fd);

}  // namespace podvisor::agent
