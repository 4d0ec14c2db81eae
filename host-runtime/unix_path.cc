#include "host-runtime/unix_path.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor::host {
namespace {

absl::StatusOr<sockaddr_un> Address(int dir_fd, const std::string& name) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = absl::StrCat("/proc/self/fd/", dir_fd, "/", name);
  if (path.size() >= sizeof addr.sun_path || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("socket name \"", name, "\" is not valid"));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

absl::StatusOr<int> ListenUnix(const std::string& dir, const std::string& name) {
  int dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus(absl::StrCat("open ", dir), errno);
  absl::Cleanup close_dir = [&] { ::close(dir_fd); };
  absl::StatusOr<sockaddr_un> addr = Address(dir_fd, name);
  if (!addr.ok()) return addr.status();
  ::unlinkat(dir_fd, name.c_str(), 0);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  const mode_t old = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  ::umask(old);
  if (rc != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(absl::StrCat("listen on ", dir, "/", name), err);
  }
  return fd;
}

absl::StatusOr<int> ConnectUnix(const std::string& dir, const std::string& name,
                                absl::Duration timeout) {
  int dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus(absl::StrCat("open ", dir), errno);
  absl::Cleanup close_dir = [&] { ::close(dir_fd); };
  absl::StatusOr<sockaddr_un> addr = Address(dir_fd, name);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  timeval tv = absl::ToTimeval(timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(absl::StrCat("connect to ", dir, "/", name), err);
  }
  return fd;
}

}  // namespace podvisor::host
