#pragma once

// A bounded log of a guest's serial console. QEMU writes the console into a FIFO; a small
// process of ours (forked from the daemon, in its own session, so it outlives a daemon restart
// as QEMU does) copies it into `<log>` and, when that reaches half the cap, renames it to
// `<log>.1` and starts a new one: the two files never hold more than the cap together, and the
// newest half of the cap at least is always kept. The process ends when QEMU closes the FIFO
// (the VM stopped) and removes the FIFO. A guest that writes without end fills nothing.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "hypervisor/domain_xml.h"

namespace podvisor {

// Makes the FIFO (ConsolePipePath(log_path)), creates `log_path` and starts the copying process;
// returns its pid (the caller may kill it when the VM never starts). `max_bytes` >= 2.
absl::StatusOr<pid_t> StartConsoleLog(const std::string& log_path, int64_t max_bytes);

}  // namespace podvisor
