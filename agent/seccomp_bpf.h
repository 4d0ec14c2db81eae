#pragma once

// Compiles an OCI seccomp profile (runtime-spec `linux.seccomp`) into the classic BPF program the
// kernel loads, with libseccomp, the library crun compiles the same profile with. The agent's
// own execs (direct_exec.h) load it themselves instead of running crun for each one.

#include <linux/filter.h>

#include <string>
#include <vector>

#include "agent/result.h"

namespace podvisor::agent {

struct SeccompProgram {
  std::vector<sock_filter> filter;
  unsigned flags = 0;  // seccomp(2) SECCOMP_FILTER_FLAG_* (LOG, SPEC_ALLOW)
};

// INVALID_ARGUMENT for a profile that is not valid (an unknown action, operator or architecture,
// an argument index above 5); UNIMPLEMENTED for one that is valid but needs more than a filter
// loaded by the process itself (a user-space notifier: SCMP_ACT_NOTIFY, listenerPath), for which
// the caller uses crun. Syscall names libseccomp does not know are skipped, as crun skips them.
Error CompileSeccompProfile(const std::string& oci_json, SeccompProgram* out);

}  // namespace podvisor::agent
