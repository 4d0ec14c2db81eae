#include "hypervisor/capability_probes.h"

#include <dirent.h>
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/log.h"

namespace podvisor {

int KillCapabilityProbes(const std::string& embed_root, bool remove_dirs) {
  const std::string lib = absl::StrCat(embed_root, "/lib/qemu");
  DIR* d = opendir(lib.c_str());
  if (!d) return 0;
  std::vector<std::string> dirs;
  while (dirent* e = readdir(d)) {
    if (absl::StartsWith(e->d_name, "qmp-")) dirs.push_back(absl::StrCat(lib, "/", e->d_name));
  }
  closedir(d);
  int killed = 0;
  for (const std::string& dir : dirs) {
    absl::StatusOr<std::string> pid_text = ReadFileLimited(dir + "/qmp.pid", 64);
    int pid = 0;
    if (pid_text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*pid_text), &pid) && pid > 1) {
      absl::StatusOr<std::string> cmdline =
          ReadFileLimited(absl::StrCat("/proc/", pid, "/cmdline"), 64 * 1024);
      if (cmdline.ok() && absl::StrContains(*cmdline, dir + "/qmp.monitor") &&
          ::kill(pid, SIGKILL) == 0) {
        ++killed;
        PV_LOG(kWarning) << "killed libvirt's capability probe QEMU " << pid << " (" << dir << ")";
      }
    }
    if (remove_dirs) {
      if (absl::Status s = RemoveAll(dir); !s.ok()) {
        PV_LOG(kWarning) << "remove " << dir << ": " << s.message();
      }
    }
  }
  return killed;
}

}  // namespace podvisor
