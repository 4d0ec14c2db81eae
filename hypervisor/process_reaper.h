// Ownership of the VM processes this process starts. libvirt daemonises QEMU (and virtiofsd):
// the process it forks exits and QEMU is re-parented to the nearest child subreaper, by default
// PID 1. On hosts whose PID 1 reaps orphans slowly, an exited QEMU stays a zombie for seconds and
// libvirt, which waits for the pid to vanish, makes every stop wait as long. Declaring this
// process a child subreaper makes such orphans its own children, which it must then reap, and
// only those: libvirt waitpid()s its direct children itself, so a blanket waitpid(-1) would steal
// their exit statuses. See docs/hypervisor.md, "Stopping a VM".
#pragma once

#include <sys/types.h>

#include <set>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace podvisor {

// Makes this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER). Process-wide and
// idempotent; orphaned descendants become this process's children from then on.
absl::Status BecomeChildSubreaper();

// A pidfd for `pid` (pidfd_open), or -1 with errno set.
int OpenPidfd(pid_t pid);

// Reaps the process `pidfd` refers to if it has exited and is a child of this process. Returns
// whether it reaped it; a process that is not our child (started before a daemon restart, so
// re-parented elsewhere) or still running is left alone.
bool ReapPidfd(int pidfd);

// Ends the process `pidfd` refers to: SIGTERM, then SIGKILL if it has not exited after `grace`;
// waits until it has exited (at most `grace` more after SIGKILL) and reaps it if it is our child.
absl::Status TerminateAndReap(int pidfd, absl::Duration grace);

// Waits up to `timeout` for the process `pidfd` refers to to exit. Returns whether it did.
bool WaitPidfdExit(int pidfd, absl::Duration timeout);

// The backstop for orphans nobody tracks by pidfd: each Sweep() reaps the zombie children of this
// process that were zombies at the previous sweep too. A zombie that nobody waited for over a
// whole sweep interval has no waiter (libvirt and this project wait for their direct children at
// once), so reaping it steals nobody's status. Not thread-safe: one thread sweeps.
class OrphanSweeper {
 public:
  // Returns the number of processes reaped.
  int Sweep();

 private:
  std::set<pid_t> zombies_;  // zombie children seen at the previous sweep
};

}  // namespace podvisor
