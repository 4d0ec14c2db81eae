#include "agent/sealed_exec.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

namespace podvisor::agent {
namespace {

std::mutex sealed_mu;
std::map<std::string, int>& Sealed() {
  static auto* sealed = new std::map<std::string, int>();
  return *sealed;
}

}  // namespace

unsigned SealedCopySeals() { return F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE; }

Error SealExecutable(const std::string& path) {
  int src = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (src < 0) return ErrnoError("open " + path, errno);
  struct stat st;
  if (fstat(src, &st) != 0) {
    const int err = errno;
    close(src);
    return ErrnoError("stat " + path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    close(src);
    return Error(Code::kFailedPrecondition, path + " is not a regular file");
  }
  // A script would run from the copy's descriptor, which is closed by the exec that needs it.
  static constexpr char kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
  char magic[4] = {};
  if (pread(src, magic, sizeof magic, 0) != sizeof magic ||
      memcmp(magic, kElfMagic, sizeof magic) != 0) {
    close(src);
    return Error(Code::kFailedPrecondition, path + " is not an ELF executable");
  }
  const std::string base = path.substr(path.find_last_of('/') + 1);
  int copy = memfd_create(base.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0) {
    const int err = errno;
    close(src);
    return ErrnoError("memfd_create", err);
  }
  off_t offset = 0;
  while (offset < st.st_size) {
    const ssize_t n = sendfile(copy, src, &offset, static_cast<size_t>(st.st_size - offset));
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      close(src);
      close(copy);
      return ErrnoError("copy " + path, err);
    }
  }
  close(src);
  // Only the agent holds the descriptor; the copy needs to be executable by its owner alone.
  if (fchmod(copy, 0500) != 0 ||
      fcntl(copy, F_ADD_SEALS, static_cast<int>(SealedCopySeals())) != 0) {
    const int err = errno;
    close(copy);
    return ErrnoError("seal the copy of " + path, err);
  }
  std::lock_guard<std::mutex> lock(sealed_mu);
  // A second call keeps the first copy: a spawn may be executing it right now.
  if (!Sealed().emplace(path, copy).second) close(copy);
  return Error::Ok();
}

int SealedExecutableFd(const std::string& path) {
  std::lock_guard<std::mutex> lock(sealed_mu);
  auto it = Sealed().find(path);
  return it == Sealed().end() ? -1 : it->second;
}

}  // namespace podvisor::agent
