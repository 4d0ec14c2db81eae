#include "pod-sandbox/container_log_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor {
namespace {

int OpenLog(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("write log ", path), errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ContainerLogWriter>> ContainerLogWriter::Open(
    const std::string& path, size_t max_line_bytes) {
  if (max_line_bytes == 0) return absl::InvalidArgumentError("max_line_bytes must be positive");
  int fd = OpenLog(path);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open log ", path), errno);
  return std::unique_ptr<ContainerLogWriter>(new ContainerLogWriter(path, fd, max_line_bytes));
}

ContainerLogWriter::~ContainerLogWriter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0) ::close(fd_);
}

std::string ContainerLogWriter::FormatTime(absl::Time t) {
  std::string s = absl::FormatTime("%Y-%m-%dT%H:%M:%E9S", t, absl::UTCTimeZone());
  // Drop trailing zeros of the fraction, and the dot if nothing is left.
  size_t dot = s.rfind('.');
  if (dot != std::string::npos) {
    size_t end = s.find_last_not_of('0');
    s.resize(end == dot ? dot : end + 1);
  }
  return s + "Z";
}

absl::Status ContainerLogWriter::WriteLine(LogStream stream, bool partial,
                                           absl::string_view content, absl::Time now) {
  std::string line = absl::StrCat(FormatTime(now), stream == LogStream::kStdout ? " stdout " : " stderr ",
                                  partial ? "P " : "F ", content, "\n");
  return WriteAll(fd_, line, path_);
}

absl::Status ContainerLogWriter::Write(LogStream stream, absl::string_view data, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string& pending = pending_[static_cast<int>(stream)];
  while (!data.empty()) {
    size_t nl = data.find('\n');
    absl::string_view piece = nl == absl::string_view::npos ? data : data.substr(0, nl);
    // Emit P parts while the pending line is over the limit.
    while (pending.size() + piece.size() > max_line_bytes_) {
      size_t take = max_line_bytes_ - pending.size();
      pending.append(piece.data(), take);
      piece.remove_prefix(take);
      if (absl::Status s = WriteLine(stream, /*partial=*/true, pending, now); !s.ok()) return s;
      pending.clear();
    }
    pending.append(piece.data(), piece.size());
    if (nl == absl::string_view::npos) break;
    if (absl::Status s = WriteLine(stream, /*partial=*/false, pending, now); !s.ok()) return s;
    pending.clear();
    data.remove_prefix(nl + 1);
  }
  return absl::OkStatus();
}

absl::Status ContainerLogWriter::CloseStream(LogStream stream, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string& pending = pending_[static_cast<int>(stream)];
  if (pending.empty()) return absl::OkStatus();
  absl::Status s = WriteLine(stream, /*partial=*/false, pending, now);
  pending.clear();
  return s;
}

size_t ContainerLogWriter::Pending(LogStream stream) {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_[static_cast<int>(stream)].size();
}

absl::Status ContainerLogWriter::Reopen() {
  std::lock_guard<std::mutex> lock(mu_);
  int fd = OpenLog(path_);
  if (fd < 0) return ErrnoStatus(absl::StrCat("reopen log ", path_), errno);
  ::close(fd_);
  fd_ = fd;
  return absl::OkStatus();
}

}  // namespace podvisor
