#pragma once

// libvirt's QEMU capability probes in the embedded driver's root. The first connection starts
// `qemu-system-x86_64 -machine none ... -daemonize` with its QMP socket and pid file in
// <embed_root>/lib/qemu/qmp-XXXXXX/ and kills it when the probe is done; a daemon that ends while
// a probe runs (stopped during start-up, or killed) leaves that QEMU running for good.

#include <string>

namespace podvisor {

// Kills (SIGKILL) the probe QEMU of every qmp-* directory under <embed_root>/lib/qemu whose pid
// file names a live process whose command line names that directory's QMP socket (a recycled pid
// belonging to anything else is left alone). `remove_dirs`: also removes the directories (only
// when no probe of this process can be under way). Returns how many it killed.
int KillCapabilityProbes(const std::string& embed_root, bool remove_dirs);

}  // namespace podvisor
