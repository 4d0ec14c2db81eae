#pragma once

// Sealed in-memory copies of the executables the agent runs again and again (crun).
//
// crun, like runc, will not run from a file a container could rewrite (CVE-2019-5736): unless
// /proc/self/exe is a memfd sealed against every change, each run first copies itself into one
// and executes that copy, and the copy checks again; a run then loads its eleven shared
// libraries twice, which in a TCG guest is most of a `crun --version`
// (docs/performance.md, "crun from a sealed copy"). The agent makes that sealed copy once, at
// start, and executes it directly: crun finds itself sealed and goes on at once. The protection
// is the same one crun gives itself (nothing can write the copy, a container cannot reach it:
// the descriptor is close-on-exec and only the agent holds it).

#include <string>

#include "agent/result.h"

namespace podvisor::agent {

// The seals crun and runc require of a copy of themselves: no write, no resize, no more seals.
unsigned SealedCopySeals();

// Copies the executable at `path` into a memfd and seals it; later spawns of `path` execute the
// copy. Call before the threads that spawn start. An error leaves `path` run from its file.
Error SealExecutable(const std::string& path);

// The sealed copy of `path` (a close-on-exec descriptor to execveat), or -1 when it has none.
int SealedExecutableFd(const std::string& path);

}  // namespace podvisor::agent
