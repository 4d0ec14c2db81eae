#include "agent/sandbox_setup.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/log.h"

namespace podvisor::agent {
namespace {

constexpr size_t kMaxEntropyBytes = 4096;

bool IsPrintableToken(const std::string& s, size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  for (unsigned char c : s) {
    if (c <= ' ' || c >= 0x7f) return false;
  }
  return true;
}

bool IsValidSysctlKey(const std::string& key) {
  if (key.empty() || key.size() > 256 || key.find("..") != std::string::npos) return false;
  if (key.front() == '.' || key.front() == '/') return false;
  for (char c : key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' ||
          c == '/')) {
      return false;
    }
  }
  return true;
}

Error WriteFile(const std::string& path, const std::string& data, bool create) {
  const std::string tmp = path + ".podvisor-tmp";
  const std::string& target = create ? tmp : path;
  int fd = open(target.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_TRUNC : 0),
                0644);
  if (fd < 0) return ErrnoError("open " + target, errno);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Error e = ErrnoError("write " + target, errno);
      close(fd);
      return e;
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return ErrnoError("close " + target, errno);
  if (create && rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename " + path, errno);
  return Error::Ok();
}

std::string ResolvConf(const v1::DnsConfig& dns) {
  std::string out = "# written by podvisor-agent\n";
  for (const std::string& s : dns.servers()) out += "nameserver " + s + "\n";
  if (dns.searches_size() > 0) {
    out += "search";
    for (const std::string& s : dns.searches()) out += " " + s;
    out += "\n";
  }
  if (dns.options_size() > 0) {
    out += "options";
    for (const std::string& s : dns.options()) out += " " + s;
    out += "\n";
  }
  return out;
}

std::string HostsFile(const std::string& hostname, const v1::SetupSandboxRequest& req) {
  std::string out = "# written by podvisor-agent\n127.0.0.1\tlocalhost";
  if (!hostname.empty()) out += " " + hostname;
  out += "\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  for (const v1::HostEntry& e : req.hosts()) {
    out += e.ip() + "\t";
    for (int i = 0; i < e.names_size(); ++i) out += (i ? " " : "") + e.names(i);
    out += "\n";
  }
  return out;
}

bool IsMachineId(const std::string& id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Credits `entropy` to the kernel's pool and reseeds the CRNG from it at once: a template clone
// starts with its template's CRNG state, which RNDADDENTROPY alone replaces only at the next
// scheduled reseed (up to a minute later on Linux 6.1).
Error SeedRandom(const std::string& entropy) {
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open /dev/urandom", errno);
  std::string buf(sizeof(rand_pool_info) + entropy.size(), '\0');
  auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
  info->entropy_count = static_cast<int>(entropy.size() * 8);
  info->buf_size = static_cast<int>(entropy.size());
  std::memcpy(info->buf, entropy.data(), entropy.size());
  int rc = ioctl(fd, RNDADDENTROPY, info);
  if (rc == 0) rc = ioctl(fd, RNDRESEEDCRNG);
  int e = errno;
  close(fd);
  if (rc != 0) return ErrnoError("seed the RNG", e);
  return Error::Ok();
}

// Mounts the host's shared directory (volumes) at `target`, nosuid,nodev: a file the host or
// another pod left there grants nothing in the guest.
Error MountShared(const std::string& tag, const std::string& type, const std::string& target) {
  if (type == "9p") {
    // cache=none: host changes (configMap updates, hostPath writes) are seen at once; the
    // largest msize QEMU allows doubles large reads and writes.
    const char* options = "trans=virtio,version=9p2000.L,msize=512000,cache=none,access=client";
    if (mount(tag.c_str(), target.c_str(), "9p", MS_NOSUID | MS_NODEV, options) != 0) {
      return ErrnoError("mount 9p " + tag + " at " + target, errno);
    }
    return Error::Ok();
  }
  if (mount(tag.c_str(), target.c_str(), "virtiofs", MS_NOSUID | MS_NODEV, nullptr) != 0) {
    return ErrnoError("mount virtiofs " + tag + " at " + target, errno);
  }
  return Error::Ok();
}

}  // namespace

bool IsValidHostname(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) {
      return false;
    }
  }
  return name.front() != '-' && name.front() != '.';
}

bool IsValidIp(const std::string& ip) {
  unsigned char buf[16];
  return inet_pton(AF_INET, ip.c_str(), buf) == 1 || inet_pton(AF_INET6, ip.c_str(), buf) == 1;
}

Error ValidateSandboxSetup(const v1::SetupSandboxRequest& req) {
  if (!req.hostname().empty() && (req.hostname().size() > 64 || !IsValidHostname(req.hostname()))) {
    return Error(Code::kInvalidArgument, "invalid hostname \"" + req.hostname() + "\"");
  }
  if (req.dns().servers_size() > 16 || req.dns().searches_size() > 32 ||
      req.dns().options_size() > 32) {
    return Error(Code::kInvalidArgument, "too many DNS entries");
  }
  for (const std::string& s : req.dns().servers()) {
    if (!IsValidIp(s)) return Error(Code::kInvalidArgument, "invalid DNS server \"" + s + "\"");
  }
  for (const std::string& s : req.dns().searches()) {
    if (!IsValidHostname(s)) return Error(Code::kInvalidArgument, "invalid DNS search \"" + s + "\"");
  }
  for (const std::string& s : req.dns().options()) {
    if (!IsPrintableToken(s, 256)) return Error(Code::kInvalidArgument, "invalid DNS option");
  }
  if (req.hosts_size() > 1024) return Error(Code::kInvalidArgument, "too many host entries");
  for (const v1::HostEntry& e : req.hosts()) {
    if (!IsValidIp(e.ip())) return Error(Code::kInvalidArgument, "invalid hosts IP \"" + e.ip() + "\"");
    if (e.names_size() == 0) return Error(Code::kInvalidArgument, "hosts entry without names");
    for (const std::string& n : e.names()) {
      if (!IsValidHostname(n)) return Error(Code::kInvalidArgument, "invalid hosts name \"" + n + "\"");
    }
  }
  if (!req.shared_fs_tag().empty() && !IsPrintableToken(req.shared_fs_tag(), 36)) {
    return Error(Code::kInvalidArgument, "invalid shared filesystem tag");
  }
  if (!req.shared_fs_type().empty() && req.shared_fs_type() != "virtiofs" &&
      req.shared_fs_type() != "9p") {
    return Error(Code::kInvalidArgument, "shared filesystem type must be virtiofs or 9p");
  }
  if (!req.machine_id().empty() && !IsMachineId(req.machine_id())) {
    return Error(Code::kInvalidArgument, "machine id must be 32 lower-case hex digits");
  }
  if (req.entropy().size() > kMaxEntropyBytes) {
    return Error(Code::kInvalidArgument, "entropy larger than 4096 bytes");
  }
  for (const auto& [key, value] : req.sysctls()) {
    if (!IsValidSysctlKey(key)) return Error(Code::kInvalidArgument, "invalid sysctl \"" + key + "\"");
    if (value.size() > 4096 || value.find('\n') != std::string::npos) {
      return Error(Code::kInvalidArgument, "invalid value for sysctl " + key);
    }
  }
  return Error::Ok();
}

Error ApplySandboxSetup(const AgentOptions& options, const v1::SetupSandboxRequest& req) {
  Error err = ValidateSandboxSetup(req);
  if (!err.ok()) return err;
  const std::string etc = options.root + "/etc";
  mkdir(etc.c_str(), 0755);
  if (req.wall_time_ns() != 0 && options.pid1) {
    timespec ts{static_cast<time_t>(req.wall_time_ns() / 1000000000ull),
                static_cast<long>(req.wall_time_ns() % 1000000000ull)};
    if (clock_settime(CLOCK_REALTIME, &ts) != 0) return ErrnoError("set the clock", errno);
  }
  if (!req.entropy().empty() && options.pid1) {
    err = SeedRandom(req.entropy());
    if (!err.ok()) return err;
  }
  if (!req.machine_id().empty()) {
    err = WriteFile(etc + "/machine-id", req.machine_id() + "\n", true);
    if (!err.ok()) return err;
  }
  if (!req.hostname().empty()) {
    if (options.pid1 && sethostname(req.hostname().data(), req.hostname().size()) != 0) {
      return ErrnoError("sethostname", errno);
    }
    err = WriteFile(etc + "/hostname", req.hostname() + "\n", true);
    if (!err.ok()) return err;
  }
  if (req.has_dns()) {
    err = WriteFile(etc + "/resolv.conf", ResolvConf(req.dns()), true);
    if (!err.ok()) return err;
  }
  err = WriteFile(etc + "/hosts", HostsFile(req.hostname(), req), true);
  if (!err.ok()) return err;
  for (const auto& [key, value] : req.sysctls()) {
    std::string path = key;
    if (path.find('/') == std::string::npos) {
      for (char& c : path) c = c == '.' ? '/' : c;
    }
    err = WriteFile(options.root + "/proc/sys/" + path, value, false);
    if (!err.ok()) return err.With("sysctl " + key);
  }
  static bool shared_mounted = false;  // setup runs again after a template clone is restored
  if (!req.shared_fs_tag().empty() && options.pid1 && !shared_mounted) {
    const std::string target = options.state_dir + "/shared";
    for (const std::string& dir : {options.state_dir, target}) {
      if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoError("mkdir " + dir, errno);
      }
    }
    err = MountShared(req.shared_fs_tag(), req.shared_fs_type(), target);
    if (!err.ok()) return err;
    shared_mounted = true;
  }
  AgentLog(LogSeverity::kInfo, "sandbox set up (hostname \"" + req.hostname() + "\")");
  return Error::Ok();
}

}  // namespace podvisor::agent
