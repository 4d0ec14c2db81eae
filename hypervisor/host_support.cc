#include "hypervisor/host_support.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/log.h"

extern char** environ;

namespace podvisor {

absl::Status RunCommand(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int err = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  if (err != 0) return ErrnoStatus(absl::StrCat("run ", argv[0]), err);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " failed with status ", status));
  }
  return absl::OkStatus();
}

// libvirt's QEMU driver refuses to work unless a libvirt-qemu user and group exist, even when
// qemu.conf says root.
absl::Status EnsureQemuUser() {
  if (getgrnam("libvirt-qemu") == nullptr) {
    PV_LOG(kInfo) << "creating group libvirt-qemu";
    if (auto s = RunCommand({"groupadd", "--system", "libvirt-qemu"}); !s.ok()) return s;
  }
  if (getpwnam("libvirt-qemu") == nullptr) {
    PV_LOG(kInfo) << "creating user libvirt-qemu";
    if (auto s = RunCommand({"useradd", "--system", "--no-create-home", "--home-dir",
                             "/nonexistent", "--shell", "/usr/sbin/nologin", "-g",
                             "libvirt-qemu", "libvirt-qemu"});
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// The host TSC frequency in kHz: the kernel's own figure when it exports one, else cpu0's
// "cpu MHz" (constant on hosts with constant_tsc, which QEMU guests rely on).
uint64_t ReadHostTscKhz() {
  if (auto khz = ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); khz.ok()) {
    uint64_t value = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*khz), &value) && value > 0) return value;
  }
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (!absl::StartsWith(line, "cpu MHz")) continue;
    std::vector<std::string> parts = absl::StrSplit(line, ':');
    double mhz = 0;
    if (parts.size() == 2 && absl::SimpleAtod(absl::StripAsciiWhitespace(parts[1]), &mhz)) {
      return static_cast<uint64_t>(std::llround(mhz * 1000));
    }
    break;
  }
  return 0;
}

// Runs `fn` on a new thread that has joined the network namespace at `netns_path`, so that
// libvirt opens the VM's tap devices there (TUNSETIFF works by name in the caller's namespace)
// and QEMU, forked from that thread, runs there too.
absl::Status RunInNetns(const std::string& netns_path, const std::function<absl::Status()>& fn) {
  if (netns_path.empty()) return fn();
  absl::Status result;
  std::thread worker([&] {
    int fd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      result = ErrnoStatus(absl::StrCat("open netns ", netns_path), errno);
      return;
    }
    int rc = setns(fd, CLONE_NEWNET);
    int err = errno;
    close(fd);
    if (rc != 0) {
      result = ErrnoStatus(absl::StrCat("enter netns ", netns_path), err);
      return;
    }
    result = fn();
  });
  worker.join();
  return result;
}

absl::Status WriteControlFile(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  ssize_t n = write(fd, value.data(), value.size());
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return ErrnoStatus(absl::StrCat("write ", value, " to ", path), n < 0 ? err : EIO);
  }
  return absl::OkStatus();
}

absl::Status MoveToCgroups(pid_t pid, const std::vector<std::string>& cgroup_dirs) {
  for (const std::string& dir : cgroup_dirs) {
    if (absl::Status s = WriteControlFile(dir + "/cgroup.procs", std::to_string(pid)); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace podvisor
