#include "common/fs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/safe_path.h"

namespace podvisor {

absl::Status ErrnoStatus(absl::string_view what, int err) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (err) {
    case ENOENT:
      code = absl::StatusCode::kNotFound;
      break;
    case EEXIST:
      code = absl::StatusCode::kAlreadyExists;
      break;
    case EACCES:
    case EPERM:
      code = absl::StatusCode::kPermissionDenied;
      break;
    case ENOSPC:
    case EDQUOT:
      code = absl::StatusCode::kResourceExhausted;
      break;
    case EINVAL:
      code = absl::StatusCode::kInvalidArgument;
      break;
    default:
      break;
  }
  return absl::Status(code, absl::StrCat(what, ": ", std::strerror(err)));
}

absl::Status MakeDirs(const std::string& path, unsigned mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoStatus(absl::StrCat("create directory ", path), ec.value());
  if (::chmod(path.c_str(), mode) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", path), errno);
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", dir), errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(absl::StrCat("fsync ", dir), err);
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, unsigned mode) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", tmp), errno);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus(absl::StrCat("write ", tmp), err);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(absl::StrCat("fsync ", tmp), err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(absl::StrCat("rename ", tmp, " to ", path), err);
  }
  return FsyncDir(dir.empty() ? "." : dir);
}

namespace {

// Reads `fd` to its end and closes it; more than `max_bytes` (< 0: no limit) is OUT_OF_RANGE.
absl::StatusOr<std::string> ReadAndClose(int fd, const std::string& path, int64_t max_bytes) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus(absl::StrCat("read ", path), err);
    }
    if (n == 0) break;
    if (max_bytes >= 0 && static_cast<int64_t>(out.size()) + n > max_bytes) {
      ::close(fd);
      return absl::OutOfRangeError(
          absl::StrCat(path, " is larger than the limit of ", max_bytes, " bytes"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  return ReadAndClose(fd, path, -1);
}

absl::Status EnsureDirs(const std::string& path, unsigned mode) {
  if (path.empty()) return absl::InvalidArgumentError("create directory: empty path");
  std::string prefix = path[0] == '/' ? "/" : "";
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    absl::StrAppend(&prefix, part);
    struct stat st {};
    if (::stat(prefix.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat("create directory ", path, ": ", prefix, " is not a directory"));
      }
    } else if (errno != ENOENT) {
      return ErrnoStatus(absl::StrCat("stat ", prefix), errno);
    } else if (::mkdir(prefix.c_str(), mode) == 0) {
      // Only what was created here gets `mode` (mkdir applied the umask to it).
      if (::chmod(prefix.c_str(), mode) != 0) {
        return ErrnoStatus(absl::StrCat("chmod ", prefix), errno);
      }
    } else if (errno != EEXIST) {
      return ErrnoStatus(absl::StrCat("create directory ", prefix), errno);
    }
    prefix.push_back('/');
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileLimited(const std::string& path, int64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  return ReadAndClose(fd, path, max_bytes);
}

bool HasDotDot(absl::string_view path) {
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return true;
  }
  return false;
}

namespace {

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
std::string UnescapeMountPath(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out += static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> MountPointsUnder(const std::string& path) {
  std::error_code ec;
  std::string root = std::filesystem::weakly_canonical(std::filesystem::absolute(path), ec);
  if (ec) return ErrnoStatus(absl::StrCat("resolve ", path), ec.value());
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  absl::StatusOr<std::string> info = ReadFile("/proc/self/mountinfo");
  if (!info.ok()) return info.status();
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(*info, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5) continue;
    std::string mount_point = UnescapeMountPath(fields[4]);
    if (mount_point == root ||
        (mount_point.size() > root.size() && mount_point.compare(0, root.size(), root) == 0 &&
         (root == "/" || mount_point[root.size()] == '/'))) {
      out.push_back(std::move(mount_point));
    }
  }
  // Deeper paths after their parents; a path mounted twice keeps mountinfo's order.
  std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return std::count(a.begin(), a.end(), '/') < std::count(b.begin(), b.end(), '/');
  });
  return out;
}

absl::Status UnmountAllUnder(const std::string& path) {
  absl::StatusOr<std::vector<std::string>> mounts = MountPointsUnder(path);
  if (!mounts.ok()) return mounts.status();
  for (auto it = mounts->rbegin(); it != mounts->rend(); ++it) {
    if (::umount2(it->c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      return ErrnoStatus(absl::StrCat("unmount ", *it), errno);
    }
  }
  return absl::OkStatus();
}

absl::Status RemoveAll(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  const std::string parent =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
  const std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("remove ", path, ": not a removable path"));
  }
  const int parent_fd = ::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (parent_fd < 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("remove ", path, ": open ", parent), errno);
  }
  absl::Status s = RemoveTreeAt(parent_fd, name);
  ::close(parent_fd);
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat("remove ", path, ": ", s.message()));
  return absl::OkStatus();
}

std::string ExecutableDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return ".";
  return exe.parent_path().string();
}

}  // namespace podvisor
