#pragma once

// Block devices the host attaches, found by serial, and mounting them.

#include <string>
#include <vector>

#include "agent/result.h"

namespace podvisor::agent {

// Finds /dev/<name> whose virtio-blk serial (/sys/block/<name>/serial) or SCSI unit serial
// (VPD page 0x80) equals `serial`; waits up to timeout_ms for a hot-plugged disk to appear.
Error FindBlockDevice(const std::string& sysfs_root, const std::string& serial, int timeout_ms,
                      std::string* device);

// mount(2) with fstab-style options: flags ("ro", "nosuid", ...) are mapped, the rest is data.
Error MountWithOptions(const std::string& source, const std::string& target,
                       const std::string& type, const std::vector<std::string>& options,
                       bool readonly);

// Unmounts every mount whose source is `device` (deepest first).
Error UnmountDevice(const std::string& device);

bool IsValidSerial(const std::string& serial);

}  // namespace podvisor::agent
