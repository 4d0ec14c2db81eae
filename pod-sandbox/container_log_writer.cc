#include "pod-sandbox/container_log_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
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
  std::unique_ptr<ContainerLogWriter> w(new ContainerLogWriter(path, fd, max_line_bytes));
  {
    std::lock_guard<std::mutex> lock(w->mu_);
    w->Stat();
  }
  return w;
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

void ContainerLogWriter::RenderLine(LogStream stream, bool partial, absl::string_view content,
                                    absl::Time now, std::string* out) {
  absl::StrAppend(out, FormatTime(now), stream == LogStream::kStdout ? " stdout " : " stderr ",
                  partial ? "P " : "F ", content, "\n");
}

void ContainerLogWriter::Stat() {
  struct stat st;
  if (::fstat(fd_, &st) == 0) {
    inode_ = st.st_ino;
    size_ = static_cast<uint64_t>(st.st_size);
  }
}

absl::Status ContainerLogWriter::Flush(LogStream stream, const std::string& out,
                                       const BeforeWrite& before) {
  if (out.empty()) return absl::OkStatus();
  if (before) before(inode_, size_ + out.size(), pending_[static_cast<int>(stream)].size());
  absl::Status s = WriteAll(fd_, out, path_);
  if (s.ok()) {
    size_ += out.size();
  } else {
    Stat();
  }
  return s;
}

absl::Status ContainerLogWriter::Write(LogStream stream, absl::string_view data, absl::Time now,
                                       const BeforeWrite& before) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string& pending = pending_[static_cast<int>(stream)];
  std::string out;
  while (!data.empty()) {
    size_t nl = data.find('\n');
    absl::string_view piece = nl == absl::string_view::npos ? data : data.substr(0, nl);
    // Emit P parts while the pending line is over the limit.
    while (pending.size() + piece.size() > max_line_bytes_) {
      size_t take = max_line_bytes_ - pending.size();
      pending.append(piece.data(), take);
      piece.remove_prefix(take);
      RenderLine(stream, /*partial=*/true, pending, now, &out);
      pending.clear();
    }
    pending.append(piece.data(), piece.size());
    if (nl == absl::string_view::npos) break;
    RenderLine(stream, /*partial=*/false, pending, now, &out);
    pending.clear();
    data.remove_prefix(nl + 1);
  }
  return Flush(stream, out, before);
}

absl::Status ContainerLogWriter::CloseStream(LogStream stream, absl::Time now,
                                             const BeforeWrite& before) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string& pending = pending_[static_cast<int>(stream)];
  if (pending.empty()) return absl::OkStatus();
  std::string out;
  RenderLine(stream, /*partial=*/false, pending, now, &out);
  pending.clear();
  return Flush(stream, out, before);
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
  Stat();
  return absl::OkStatus();
}

}  // namespace podvisor
