#include "agent/oci_spec.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"

namespace podvisor::agent {
namespace {

using nlohmann::json;

const char* const kAllCaps[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"};

bool IsAbsoluteClean(const std::string& p) {
  return !p.empty() && p[0] == '/' && p.find("/../") == std::string::npos &&
         (p.size() < 3 || p.compare(p.size() - 3, 3, "/..") != 0) &&
         p.find('\0') == std::string::npos;
}

json Strings(const google::protobuf::RepeatedPtrField<std::string>& v) {
  json a = json::array();
  for (const std::string& s : v) a.push_back(s);
  return a;
}

json ProcessJson(const v1::Process& p, bool privileged) {
  json proc;
  proc["terminal"] = p.terminal();
  if (p.terminal() && p.tty_rows() && p.tty_cols()) {
    proc["consoleSize"] = {{"height", p.tty_rows()}, {"width", p.tty_cols()}};
  }
  json user = {{"uid", p.user().uid()}, {"gid", p.user().gid()}};
  if (p.user().additional_gids_size() > 0) {
    json g = json::array();
    for (uint32_t id : p.user().additional_gids()) g.push_back(id);
    user["additionalGids"] = g;
  }
  if (p.user().umask() != 0) user["umask"] = p.user().umask();
  proc["user"] = user;
  proc["args"] = Strings(p.args());
  json env = Strings(p.env());
  bool has_path = false;
  for (const std::string& e : p.env()) has_path |= e.rfind("PATH=", 0) == 0;
  if (!has_path) env.push_back(std::string("PATH=") + kDefaultPath);
  proc["env"] = env;
  proc["cwd"] = p.cwd().empty() ? "/" : p.cwd();
  json caps;
  if (privileged) {
    json all = json::array();
    for (const char* c : kAllCaps) all.push_back(c);
    caps = {{"bounding", all}, {"effective", all}, {"permitted", all}};
  } else {
    const v1::Capabilities& c = p.capabilities();
    caps = {{"bounding", Strings(c.bounding())}, {"effective", Strings(c.effective())},
            {"inheritable", Strings(c.inheritable())}, {"permitted", Strings(c.permitted())},
            {"ambient", Strings(c.ambient())}};
  }
  proc["capabilities"] = caps;
  proc["noNewPrivileges"] = p.no_new_privileges();
  if (p.rlimits_size() > 0) {
    json r = json::array();
    for (const v1::Rlimit& l : p.rlimits()) {
      r.push_back({{"type", l.type()}, {"hard", l.hard()}, {"soft", l.soft()}});
    }
    proc["rlimits"] = r;
  }
  if (p.oom_score_adj() != 0) proc["oomScoreAdj"] = p.oom_score_adj();
  if (!p.apparmor_profile().empty()) proc["apparmorProfile"] = p.apparmor_profile();
  if (!p.selinux_label().empty()) proc["selinuxLabel"] = p.selinux_label();
  return proc;
}

json DefaultMounts() {
  return json::array({
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}}},
      {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
      {{"destination", "/sys/fs/cgroup"}, {"type", "cgroup"}, {"source", "cgroup"},
       {"options", {"nosuid", "noexec", "nodev", "relatime", "ro"}}},
  });
}

json Resources(const v1::LinuxResources& r, bool device_cgroup) {
  json res = json::object();
  if (device_cgroup) res["devices"] = json::array({{{"allow", false}, {"access", "rwm"}}});
  json cpu = json::object();
  if (r.cpu_shares()) cpu["shares"] = r.cpu_shares();
  if (r.cpu_quota()) cpu["quota"] = r.cpu_quota();
  if (r.cpu_period()) cpu["period"] = r.cpu_period();
  if (!r.cpuset_cpus().empty()) cpu["cpus"] = r.cpuset_cpus();
  if (!r.cpuset_mems().empty()) cpu["mems"] = r.cpuset_mems();
  if (!cpu.empty()) res["cpu"] = cpu;
  json mem = json::object();
  if (r.memory_limit_bytes()) mem["limit"] = r.memory_limit_bytes();
  if (r.memory_swap_limit_bytes()) mem["swap"] = r.memory_swap_limit_bytes();
  if (!mem.empty()) res["memory"] = mem;
  if (r.pids_limit()) res["pids"] = {{"limit", r.pids_limit()}};
  if (r.hugepage_limits_size() > 0) {
    json h = json::array();
    for (const auto& [size, limit] : r.hugepage_limits()) {
      h.push_back({{"pageSize", size}, {"limit", limit}});
    }
    res["hugepageLimits"] = h;
  }
  if (r.unified_size() > 0) {
    json u = json::object();
    for (const auto& [k, v] : r.unified()) u[k] = v;
    res["unified"] = u;
  }
  return res;
}

}  // namespace

int CapabilityNumber(const std::string& name) {
  for (size_t i = 0; i < sizeof(kAllCaps) / sizeof(kAllCaps[0]); ++i) {
    if (name == kAllCaps[i]) return static_cast<int>(i);
  }
  return -1;
}

int KnownCapabilityCount() { return static_cast<int>(sizeof(kAllCaps) / sizeof(kAllCaps[0])); }

Error ValidateProcess(const v1::Process& p) {
  if (p.args_size() == 0 || p.args(0).empty()) {
    return Error(Code::kInvalidArgument, "process has no command");
  }
  if (!p.cwd().empty() && !IsAbsoluteClean(p.cwd())) {
    return Error(Code::kInvalidArgument, "working directory must be absolute: " + p.cwd());
  }
  for (const std::string& e : p.env()) {
    if (e.find('=') == std::string::npos || e[0] == '=') {
      return Error(Code::kInvalidArgument, "bad environment entry \"" + e + "\"");
    }
  }
  return Error::Ok();
}

Error ValidateContainerSpec(const v1::ContainerSpec& spec) {
  if (Error e = ValidateProcess(spec.process()); !e.ok()) return e;
  for (const v1::Mount& m : spec.mounts()) {
    if (!IsAbsoluteClean(m.destination())) {
      return Error(Code::kInvalidArgument, "mount destination must be absolute: " + m.destination());
    }
  }
  if (!spec.seccomp().oci_json().empty()) {
    json s = json::parse(spec.seccomp().oci_json(), nullptr, false);
    if (s.is_discarded() || !s.is_object()) {
      return Error(Code::kInvalidArgument, "seccomp profile is not a JSON object");
    }
  }
  return Error::Ok();
}

Error BuildResourcesUpdateJson(const v1::LinuxResources& resources, std::string* out) {
  for (const auto& [key, value] : resources.unified()) {
    if (key.empty() || key.find('/') != std::string::npos || key[0] == '.') {
      return Error(Code::kInvalidArgument, "unified key \"" + key + "\" is not a cgroup file");
    }
  }
  *out = Resources(resources, false).dump();
  return Error::Ok();
}

namespace {

// The colon-separated fields of each line of an /etc/passwd or /etc/group file.
std::vector<std::vector<std::string>> ReadColonFile(const std::string& path) {
  std::vector<std::vector<std::string>> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string part;
    while (std::getline(ss, part, ':')) f.push_back(part);
    if (!line.empty() && line.back() == ':') f.emplace_back();  // an empty last field
    lines.push_back(std::move(f));
  }
  return lines;
}

// A decimal id as /etc/passwd and /etc/group write it; false for anything else.
bool ParseId(const std::string& s, uint32_t* id) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (v > UINT32_MAX) return false;
  *id = static_cast<uint32_t>(v);
  return true;
}

// Adds the groups that <rootfs>/etc/group lists `name` as a member of, as the image's own
// supplementary groups (what login(1) and containerd/runc give a user named by the image).
void AddImageGroups(const std::string& rootfs, const std::string& name, v1::User* user) {
  for (const std::vector<std::string>& g : ReadColonFile(rootfs + "/etc/group")) {
    if (g.size() < 4) continue;
    std::stringstream members(g[3]);
    std::string member;
    bool listed = false;
    while (std::getline(members, member, ',')) listed |= member == name;
    uint32_t gid = 0;
    if (listed && ParseId(g[2], &gid)) user->add_additional_gids(gid);
  }
}

// The supplementary groups as the process holds them: the primary gid among them (as containerd
// gives it), ascending (setgroups(2) sorts them), each once.
void NormalizeGroups(v1::User* user) {
  std::vector<uint32_t> groups(user->additional_gids().begin(), user->additional_gids().end());
  groups.push_back(user->gid());
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  user->clear_additional_gids();
  for (uint32_t g : groups) user->add_additional_gids(g);
}

}  // namespace

Error ResolveUser(const std::string& rootfs, v1::User* user) {
  if (!user->has_uid() && user->username().empty()) {
    user->set_has_uid(true);  // root
  }
  std::string name;
  for (const std::vector<std::string>& f : ReadColonFile(rootfs + "/etc/passwd")) {
    if (f.size() < 4) continue;
    const bool by_name = !user->has_uid() && f[0] == user->username();
    if (!by_name && !(user->has_uid() && std::to_string(user->uid()) == f[2])) continue;
    if (by_name) {
      user->set_uid(static_cast<uint32_t>(std::strtoul(f[2].c_str(), nullptr, 10)));
      user->set_has_uid(true);
    }
    if (user->gid_from_passwd()) {
      user->set_gid(static_cast<uint32_t>(std::strtoul(f[3].c_str(), nullptr, 10)));
    }
    name = f[0];
    break;
  }
  if (!user->has_uid()) {
    return Error(Code::kInvalidArgument,
                 "user \"" + user->username() + "\" not found in the image's /etc/passwd");
  }
  // Strict: the request's groups only, whatever the image's /etc/group says.
  if (!name.empty() && !user->strict_supplemental_groups()) AddImageGroups(rootfs, name, user);
  NormalizeGroups(user);
  if (user->additional_gids_size() > kMaxSupplementaryGroups) {
    return Error(Code::kInvalidArgument, "user is in " +
                                             std::to_string(user->additional_gids_size()) +
                                             " groups; a process can hold at most " +
                                             std::to_string(kMaxSupplementaryGroups));
  }
  return Error::Ok();
}

std::string Base64(const std::string& bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(v >> shift) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size())
      v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Error BuildProcessJson(const v1::Process& process, bool privileged, std::string* out) {
  if (Error e = ValidateProcess(process); !e.ok()) return e;
  // Invalid UTF-8 from the host is replaced, never thrown about (PID 1 must not die).
  *out = ProcessJson(process, privileged).dump(-1, ' ', false, json::error_handler_t::replace);
  return Error::Ok();
}

Error BuildConfigJson(const v1::ContainerSpec& spec, const OciOptions& options,
                      std::string* out) {
  if (Error e = ValidateContainerSpec(spec); !e.ok()) return e;
  json c;
  c["ociVersion"] = "1.0.2";
  c["process"] = ProcessJson(spec.process(), spec.privileged());
  if (spec.privileged() && !options.privileged_capabilities.empty()) {
    json caps = json::array();
    for (const std::string& cap : options.privileged_capabilities) caps.push_back(cap);
    c["process"]["capabilities"] = {{"bounding", caps}, {"effective", caps}, {"permitted", caps}};
  }
  c["root"] = {{"path", options.rootfs_path}, {"readonly", spec.rootfs().readonly()}};
  if (!spec.hostname().empty()) c["hostname"] = spec.hostname();
  json mounts = DefaultMounts();
  if (spec.privileged()) mounts[5]["options"] = {"nosuid", "noexec", "nodev"};
  if (!options.pod_shm.empty()) {
    mounts[3] = {{"destination", "/dev/shm"}, {"type", "bind"}, {"source", options.pod_shm},
                 {"options", {"rbind", "nosuid", "noexec", "nodev"}}};
  }
  if (!options.user_namespace.empty()) {
    mounts[4] = {{"destination", "/dev/mqueue"},
                 {"type", "bind"},
                 {"source", options.pod_mqueue},
                 {"options", {"rbind", "nosuid", "noexec", "nodev"}}};
  }
  for (const v1::Mount& m : spec.mounts()) {
    mounts.push_back({{"destination", m.destination()}, {"type", m.type()},
                      {"source", m.source()}, {"options", Strings(m.options())}});
  }
  c["mounts"] = mounts;
  json linux_section;
  json ns = json::array();
  if (options.namespaces) {
    for (const auto& [type, path] : *options.namespaces) {
      json n = {{"type", type}};
      if (!path.empty()) n["path"] = path;
      ns.push_back(n);
    }
  } else {
    // The VM is the pod: network, IPC and UTS are the guest's own, shared by its containers.
    ns = json::array({{{"type", "mount"}}, {{"type", "cgroup"}}});
    if (!spec.share_pid_namespace()) {
      ns.push_back({{"type", "pid"}});
    } else if (!options.pod_pid_namespace.empty()) {
      ns.push_back({{"type", "pid"}, {"path", options.pod_pid_namespace}});
    }
    // Joined first by crun: the mount, cgroup and PID namespaces it then makes are the user
    // namespace's own.
    if (!options.user_namespace.empty()) {
      ns.push_back({{"type", "user"}, {"path", options.user_namespace}});
    }
  }
  linux_section["namespaces"] = ns;
  if (!options.rootfs_propagation.empty()) {
    linux_section["rootfsPropagation"] = options.rootfs_propagation;
  }
  linux_section["cgroupsPath"] = options.cgroups_path;
  linux_section["resources"] = Resources(spec.resources(), options.device_cgroup);
  if (!spec.privileged()) {
    linux_section["maskedPaths"] = Strings(spec.masked_paths());
    linux_section["readonlyPaths"] = Strings(spec.readonly_paths());
    if (!spec.seccomp().oci_json().empty()) {
      linux_section["seccomp"] = json::parse(spec.seccomp().oci_json(), nullptr, false);
    }
  }
  if (spec.sysctls_size() > 0) {
    json s = json::object();
    for (const auto& [k, v] : spec.sysctls()) s[k] = v;
    linux_section["sysctl"] = s;
  }
  c["linux"] = linux_section;
  json annotations = json::object();
  for (const auto& [k, v] : spec.annotations()) annotations[k] = v;
  // Set last: nothing in the spec replaces the program the agent compiled from its profile.
  if (linux_section.contains("seccomp") && !options.seccomp_bpf.empty()) {
    annotations["run.oci.seccomp_bpf_data"] = Base64(options.seccomp_bpf);
  } else {
    annotations.erase("run.oci.seccomp_bpf_data");
  }
  if (!annotations.empty()) c["annotations"] = annotations;
  *out = c.dump(1, ' ', false, json::error_handler_t::replace);
  return Error::Ok();
}

}  // namespace podvisor::agent
