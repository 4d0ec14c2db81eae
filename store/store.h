#pragma once

#include <memory>
#include <optional>
#include <string>

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor {

// One change inside a transaction: a put when `value` is set, else a delete.
struct RecordWrite {
  std::string kind;
  std::string id;
  std::optional<std::string> value;
};

// A durable store of records: (kind, id) -> value (a JSON document by convention).
//
// Backed by SQLite in WAL mode with synchronous=FULL: every call that returns OK has reached the
// disk, and a kill -9 (or power loss) at any instant leaves each transaction wholly applied or
// not at all. Thread-safe.
class RecordStore {
 public:
  virtual ~RecordStore() = default;

  // Opens (creating if needed) the store file at `path`.
  static absl::StatusOr<std::unique_ptr<RecordStore>> Open(const std::string& path);

  virtual absl::Status Put(absl::string_view kind, absl::string_view id, absl::string_view value) = 0;
  // Deleting a missing record is OK.
  virtual absl::Status Delete(absl::string_view kind, absl::string_view id) = 0;
  // Applies all writes in one transaction.
  virtual absl::Status Apply(const std::vector<RecordWrite>& writes) = 0;
  // NOT_FOUND when missing.
  virtual absl::StatusOr<std::string> Get(absl::string_view kind, absl::string_view id) = 0;
  // All records of `kind`, ordered by id.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view kind) = 0;
};

}  // namespace podvisor
