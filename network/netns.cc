#include "network/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor::network {

absl::Status CreateNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create netns file ", path), errno);
  ::close(fd);
  absl::Status status;
  // unshare() moves only the calling thread; doing it on a throwaway thread keeps the daemon's
  // threads in the host namespace.
  std::thread worker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      status = ErrnoStatus("unshare network namespace", errno);
      return;
    }
    std::string self = absl::StrCat("/proc/self/task/", ::syscall(SYS_gettid), "/ns/net");
    if (::mount(self.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      status = ErrnoStatus(absl::StrCat("bind-mount netns on ", path), errno);
    }
  });
  worker.join();
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

absl::Status RemoveNetns(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("unmount netns ", path), errno);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("remove netns file ", path), errno);
  }
  return absl::OkStatus();
}

bool IsNetns(const std::string& path) {
  struct statfs st;
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == NSFS_MAGIC;
}

absl::Status RunInNetns(const std::string& path, const std::function<absl::Status()>& fn) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open netns ", path), errno);
  absl::Status status;
  std::thread worker([&] {
    if (::setns(fd, CLONE_NEWNET) != 0) {
      status = ErrnoStatus(absl::StrCat("enter netns ", path), errno);
      return;
    }
    status = fn();
  });
  worker.join();
  ::close(fd);
  return status;
}

}  // namespace podvisor::network
