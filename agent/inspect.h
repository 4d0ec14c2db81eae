#pragma once

// The guest as the agent sees it, for `podvisorctl agent POD ps`: its processes (with the
// container each runs in), its mounts and its block devices. Read from /proc and /sys on each
// call; bounded so that an answer always fits in one frame, whatever a container does.

#include <string>

#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

inline constexpr int kInspectMaxProcesses = 2048;
inline constexpr int kInspectMaxMounts = 1024;
inline constexpr int kInspectMaxDisks = 256;
inline constexpr size_t kInspectMaxCommandBytes = 256;
inline constexpr size_t kInspectMaxPath = 4096;

// `proc_root` and `sys_root` are "/proc" and "/sys" in the guest (other roots in tests).
v1::InspectResponse InspectGuest(const std::string& proc_root, const std::string& sys_root);

// The container id a /proc/PID/cgroup text names: the path component after "/podvisor/" (the
// agent's cgroup parent for containers), or "" for a process outside every container.
std::string ContainerOfCgroup(const std::string& cgroup_text);

}  // namespace podvisor::agent
