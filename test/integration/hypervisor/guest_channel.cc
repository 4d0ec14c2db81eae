#include "test/integration/hypervisor/guest_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor::testing {

absl::StatusOr<GuestChannel> GuestChannel::Connect(const std::string& socket_path,
                                                   absl::Time deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("socket path too long");
  }
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  int last_errno = 0;
  do {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus("socket", errno);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return GuestChannel(fd);
    }
    last_errno = errno;
    close(fd);
    absl::SleepFor(absl::Milliseconds(2));
  } while (absl::Now() < deadline);
  return absl::DeadlineExceededError(
      absl::StrCat("connect ", socket_path, ": ", std::strerror(last_errno)));
}

GuestChannel::~GuestChannel() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::string> GuestChannel::ReadBytes(size_t n, absl::Time deadline) {
  for (;;) {
    if (buffer_.size() >= n) {
      std::string bytes = buffer_.substr(0, n);
      buffer_.erase(0, n);
      return bytes;
    }
    if (auto s = Fill(deadline); !s.ok()) return s;
  }
}

absl::Status GuestChannel::SendBytes(const std::string& bytes) {
  if (write(fd_, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
    return ErrnoStatus("write", errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GuestChannel::ReadLine(absl::Time deadline) {
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (auto s = Fill(deadline); !s.ok()) return s;
  }
}

absl::Status GuestChannel::Fill(absl::Time deadline) {
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("guest sent too little; got '", buffer_, "'"));
    }
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (rc < 0 && errno != EINTR) return ErrnoStatus("poll", errno);
    if (rc <= 0) continue;
    char chunk[4096];
    ssize_t n = read(fd_, chunk, sizeof(chunk));
    if (n == 0) return absl::UnavailableError("guest channel closed");
    if (n < 0 && errno != EINTR) return ErrnoStatus("read", errno);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return absl::OkStatus();
    }
  }
}

absl::Status GuestChannel::Send(const std::string& line) {
  std::string data = line + "\n";
  if (write(fd_, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    return ErrnoStatus("write", errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GuestChannel::Ask(const std::string& command,
                                              absl::Duration timeout) {
  if (auto s = Send(command); !s.ok()) return s;
  return ReadLine(absl::Now() + timeout);
}

}  // namespace podvisor::testing
