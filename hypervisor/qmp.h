#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// QMP (QEMU Machine Protocol) commands the template code sends through libvirt's monitor
// passthrough, and the parsing of their replies. Pure functions: unit-tested without QEMU.
namespace podvisor::qmp {

// The file descriptor name a saved or restored device state is passed under (getfd).
inline constexpr char kStateFdName[] = "podvisor-state";

// migrate-set-capabilities with x-ignore-shared on: RAM in a shared named file is not sent.
std::string SetIgnoreShared();
// getfd: the descriptor passed along with this command gets the name `fd_name`.
std::string GetFd(absl::string_view fd_name);
// migrate to / migrate-incoming from "fd:<fd_name>".
std::string MigrateToFd(absl::string_view fd_name);
std::string MigrateIncomingFromFd(absl::string_view fd_name);
std::string QueryMigrate();
std::string QueryStatus();

// The "return" member of a reply, as JSON text. A QMP error becomes a Status whose code follows
// the error class (GenericError -> FAILED_PRECONDITION, others UNAVAILABLE) and whose message is
// QEMU's description; a reply that is not QMP is INTERNAL.
absl::StatusOr<std::string> ReplyReturn(absl::string_view reply);

// Of a query-migrate reply: its "status" ("active", "completed", "failed", ...; "none" when no
// migration ran) and, for a failure, QEMU's "error-desc".
struct MigrationState {
  std::string status;
  std::string error;
};
absl::StatusOr<MigrationState> ParseQueryMigrate(absl::string_view reply);

// Of a query-status reply: the run state ("running", "inmigrate", "postmigrate", "paused", ...).
absl::StatusOr<std::string> ParseQueryStatus(absl::string_view reply);

}  // namespace podvisor::qmp
