#include "hypervisor/accel_probe_cache.h"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor {
namespace {

constexpr char kResultPrefix[] = "kvm_boots=";
// A cache file is a few hundred bytes; anything much larger is not ours.
constexpr size_t kMaxCacheBytes = 64 * 1024;

absl::StatusOr<std::string> FileIdentity(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(absl::StrCat("stat ", path), errno);
  return absl::StrCat(path, " size ", st.st_size, " mtime ", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec, " inode ", st.st_dev, ":", st.st_ino);
}

}  // namespace

absl::StatusOr<std::string> AccelProbeKey(const AccelProbeInputs& inputs) {
  struct utsname uts;
  if (uname(&uts) != 0) return ErrnoStatus("uname", errno);
  std::string key = absl::StrCat("host_kernel=", uts.release, " ", uts.version, "\n",
                                 "libvirt=", inputs.libvirt_version, "\n");
  const std::pair<const char*, const std::string*> files[] = {
      {"qemu", &inputs.emulator}, {"guest_kernel", &inputs.kernel}, {"guest_initrd", &inputs.initrd}};
  for (const auto& [name, path] : files) {
    absl::StatusOr<std::string> id = FileIdentity(*path);
    if (!id.ok()) return id.status();
    absl::StrAppend(&key, name, "=", *id, "\n");
  }
  return key;
}

std::optional<bool> LoadAccelProbe(const std::string& path, const std::string& key) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || static_cast<size_t>(st.st_size) > kMaxCacheBytes) {
    return std::nullopt;
  }
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok() || !absl::StartsWith(*text, key)) return std::nullopt;
  std::string rest = text->substr(key.size());
  if (rest == absl::StrCat(kResultPrefix, "1\n")) return true;
  if (rest == absl::StrCat(kResultPrefix, "0\n")) return false;
  return std::nullopt;
}

absl::Status StoreAccelProbe(const std::string& path, const std::string& key, bool kvm_boots) {
  return WriteFileAtomic(path, absl::StrCat(key, kResultPrefix, kvm_boots ? "1" : "0", "\n"),
                         0600);
}

}  // namespace podvisor
