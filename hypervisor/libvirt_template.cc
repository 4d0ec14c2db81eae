#include "hypervisor/libvirt_template.h"

#include <fcntl.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "hypervisor/qmp.h"

namespace podvisor {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(2);

// Sends `command` (with `fd` attached when >= 0) and returns QEMU's raw reply.
absl::StatusOr<std::string> Monitor(virDomainPtr dom, const std::string& command, int fd = -1) {
  char* reply = nullptr;
  int rc;
  if (fd >= 0) {
    int files[1] = {fd};
    rc = virDomainQemuMonitorCommandWithFiles(dom, command.c_str(), 1, files, nullptr, nullptr,
                                              &reply, 0);
  } else {
    rc = virDomainQemuMonitorCommand(dom, command.c_str(), &reply, 0);
  }
  if (rc != 0) {
    const char* message = virGetLastErrorMessage();
    return absl::UnavailableError(absl::StrCat("QEMU monitor: ", message ? message : "failed"));
  }
  std::string text = reply != nullptr ? reply : "";
  free(reply);
  return text;
}

// Runs `command` and keeps only its outcome.
absl::Status Execute(virDomainPtr dom, const std::string& command, int fd = -1) {
  absl::StatusOr<std::string> reply = Monitor(dom, command, fd);
  if (!reply.ok()) return reply.status();
  return qmp::ReplyReturn(*reply).status();
}

// x-ignore-shared, then the state file under qmp::kStateFdName.
absl::Status PrepareStateFd(virDomainPtr dom, const std::string& state_file, int flags) {
  if (absl::Status s = Execute(dom, qmp::SetIgnoreShared()); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("set x-ignore-shared: ", s.message()));
  }
  int fd = open(state_file.c_str(), flags | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", state_file), errno);
  absl::Cleanup close_fd = [fd] { close(fd); };  // QEMU holds its own copy
  if (absl::Status s = Execute(dom, qmp::GetFd(qmp::kStateFdName), fd); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("pass the state file: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SaveDomainState(virDomainPtr dom, const std::string& state_file,
                             absl::Duration timeout) {
  if (absl::Status s = PrepareStateFd(dom, state_file, O_WRONLY | O_CREAT | O_TRUNC); !s.ok()) {
    return s;
  }
  if (absl::Status s = Execute(dom, qmp::MigrateToFd(qmp::kStateFdName)); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("migrate: ", s.message()));
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<std::string> reply = Monitor(dom, qmp::QueryMigrate());
    if (!reply.ok()) return reply.status();
    absl::StatusOr<qmp::MigrationState> state = qmp::ParseQueryMigrate(*reply);
    if (!state.ok()) return state.status();
    if (state->status == "completed") return absl::OkStatus();
    if (state->status == "failed" || state->status == "cancelled") {
      return absl::InternalError(absl::StrCat("save template state: migration ", state->status,
                                              ": ", state->error));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "save template state: migration still ", state->status, " after ",
          absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollInterval);
  }
}

absl::Status RestoreDomainState(virDomainPtr dom, const std::string& state_file,
                                absl::Duration timeout) {
  if (absl::Status s = PrepareStateFd(dom, state_file, O_RDONLY); !s.ok()) return s;
  if (absl::Status s = Execute(dom, qmp::MigrateIncomingFromFd(qmp::kStateFdName)); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("migrate-incoming: ", s.message()));
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    // A state QEMU cannot load makes it exit: the monitor call then fails.
    absl::StatusOr<std::string> reply = Monitor(dom, qmp::QueryStatus());
    if (!reply.ok()) {
      return absl::Status(reply.status().code(),
                          absl::StrCat("restore: QEMU gone while loading the template state (",
                                       reply.status().message(), ")"));
    }
    absl::StatusOr<std::string> status = qmp::ParseQueryStatus(*reply);
    if (!status.ok()) return status.status();
    if (*status == "running") return absl::OkStatus();
    if (*status != "inmigrate" && *status != "prelaunch" && *status != "restore-vm") {
      return absl::InternalError(absl::StrCat("restore: guest ", *status, " after loading"));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("restore: guest still ", *status, " after ",
                                                      absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollInterval);
  }
}

std::string LibvirtVersions(virConnectPtr conn) {
  unsigned long qemu = 0, lib = 0;
  virConnectGetVersion(conn, &qemu);
  virConnectGetLibVersion(conn, &lib);
  return absl::StrCat("qemu ", qemu, " libvirt ", lib);
}

}  // namespace podvisor
