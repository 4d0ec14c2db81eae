#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace podvisor {

enum class LogStream { kStdout, kStderr };

// Writes a container's output to its log file in the CRI format kubelet reads:
//
//   <RFC3339Nano time> <stdout|stderr> <P|F> <content>\n
//
// Bytes arrive in arbitrary chunks per stream; each stream keeps its own partial line. A line
// longer than `max_line_bytes` is written as P (partial) parts ending with an F part; a line cut
// by the end of its stream is written as F, as containerd does. Reopen() reopens the path after
// kubelet rotated the file. Each call writes its lines with one write(2). Thread-safe.
class ContainerLogWriter {
 public:
  static constexpr size_t kDefaultMaxLineBytes = 16 * 1024;

  // Opens (creating, appending) `path`; its parent directory must exist.
  static absl::StatusOr<std::unique_ptr<ContainerLogWriter>> Open(
      const std::string& path, size_t max_line_bytes = kDefaultMaxLineBytes);
  ~ContainerLogWriter();

  // Runs (under the writer's lock) just before the lines of a call are written: the file's inode,
  // its size once they are written, and the stream's pending bytes after the call. A caller that
  // records where it stands can then tell after a crash whether that write happened.
  using BeforeWrite = std::function<void(uint64_t inode, uint64_t size_after, size_t pending)>;

  absl::Status Write(LogStream stream, absl::string_view data, absl::Time now = absl::Now(),
                     const BeforeWrite& before = nullptr);
  // The stream ended: a pending partial line is written as F.
  absl::Status CloseStream(LogStream stream, absl::Time now = absl::Now(),
                           const BeforeWrite& before = nullptr);
  // Closes and reopens the path (a rotated file is replaced by a new one).
  absl::Status Reopen();
  // Bytes of `stream` taken by Write() but not in the file yet (the start of a line).
  size_t Pending(LogStream stream);

  const std::string& path() const { return path_; }

  // "2026-11-28T01:02:03.000456789Z" with trailing zeros of the fraction dropped (Go's
  // time.RFC3339Nano), in UTC.
  static std::string FormatTime(absl::Time t);

 private:
  ContainerLogWriter(std::string path, int fd, size_t max_line_bytes)
      : path_(std::move(path)), fd_(fd), max_line_bytes_(max_line_bytes) {}

  void RenderLine(LogStream stream, bool partial, absl::string_view content, absl::Time now,
                  std::string* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Flush(LogStream stream, const std::string& out, const BeforeWrite& before)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Stat() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  std::mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  uint64_t inode_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  const size_t max_line_bytes_;
  std::string pending_[2] ABSL_GUARDED_BY(mu_);
};

}  // namespace podvisor
