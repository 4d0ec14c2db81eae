#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "image/digest.h"

namespace podvisor {

// Blobs by digest under <root>/blobs/sha256/<hex>. A blob is written to <root>/ingest under a
// temporary name while it arrives and renamed into place only after its size and digest were
// checked, so a blob that exists is always whole and correct. Thread-safe (the file system is
// the only state).
class ContentStore {
 public:
  explicit ContentStore(std::string root) : root_(std::move(root)) {}

  // Creates the directories and removes leftovers of interrupted ingests.
  absl::Status Init();

  std::string BlobPath(absl::string_view digest) const;
  bool Has(absl::string_view digest) const;
  // Reads a whole (small) blob; NOT_FOUND when absent, OUT_OF_RANGE when larger than max_size.
  absl::StatusOr<std::string> Read(absl::string_view digest, int64_t max_size) const;
  // Verifies `data` against `digest` and stores it.
  absl::Status Put(absl::string_view digest, absl::string_view data);
  // Removing a missing blob is OK.
  absl::Status Delete(absl::string_view digest);
  // Digests of every stored blob.
  std::vector<std::string> List() const;

  // A blob arriving in pieces. Destroying an uncommitted writer removes its temp file.
  class Writer {
   public:
    ~Writer();
    absl::Status Write(const void* data, size_t size);
    int64_t written() const { return written_; }
    // Checks size (when `expected_size` >= 0) and digest, fsyncs, renames into place.
    absl::Status Commit(absl::string_view expected_digest, int64_t expected_size);
    // Discards what was written so far and starts over (a retry from another endpoint).
    absl::Status Reset();

   private:
    friend class ContentStore;
    Writer(const ContentStore* store, std::string temp_path, int fd)
        : store_(store), temp_path_(std::move(temp_path)), fd_(fd) {}
    const ContentStore* store_;
    std::string temp_path_;
    int fd_;
    int64_t written_ = 0;
    std::unique_ptr<Sha256> hash_ = std::make_unique<Sha256>();
    bool committed_ = false;
  };
  absl::StatusOr<std::unique_ptr<Writer>> NewWriter() const;

  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

}  // namespace podvisor
