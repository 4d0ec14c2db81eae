#include "hypervisor/domain_xml.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace podvisor {
namespace {

bool IsNameChar(char c, absl::string_view extra) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         extra.find(c) != absl::string_view::npos;
}

bool ValidName(absl::string_view s, absl::string_view extra, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (!IsNameChar(c, extra)) return false;
  }
  return true;
}

bool ValidMac(absl::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2) {
      if (mac[i] != ':') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  return true;
}

// sda, sdb, ..., sdz, sdaa, ... as libvirt expects unique target names.
std::string ScsiTargetName(uint32_t index) {
  std::string suffix;
  uint32_t n = index + 1;
  while (n > 0) {
    --n;
    suffix.insert(suffix.begin(), static_cast<char>('a' + n % 26));
    n /= 26;
  }
  return "sd" + suffix;
}

absl::Status ValidateDisk(const VmDisk& disk) {
  if (!ValidName(disk.id, "_.-", 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("disk id '", disk.id, "' must be 1-20 characters of [A-Za-z0-9_.-]"));
  }
  if (disk.path.empty() || disk.path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("disk ", disk.id, ": path must be absolute, got '", disk.path, "'"));
  }
  if (disk.format != "raw" && disk.format != "qcow2") {
    return absl::InvalidArgumentError(
        absl::StrCat("disk ", disk.id, ": format must be raw or qcow2, got '", disk.format, "'"));
  }
  if (disk.index > 254) {
    return absl::InvalidArgumentError(absl::StrCat("disk ", disk.id, ": index above 254"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSpec(const VmSpec& spec) {
  if (!ValidName(spec.id, "_-", 64)) {
    return absl::InvalidArgumentError(
        absl::StrCat("VM id '", spec.id, "' must be 1-64 characters of [A-Za-z0-9_-]"));
  }
  if (spec.vcpus < 1 || spec.vcpus > 64) {
    return absl::InvalidArgumentError(absl::StrCat("vcpus must be 1..64, got ", spec.vcpus));
  }
  if (spec.memory_mib < 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory must be at least 64 MiB, got ", spec.memory_mib));
  }
  for (const auto* path : {&spec.kernel, &spec.initrd, &spec.agent_socket, &spec.console_log}) {
    if (path->empty() || (*path)[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "kernel, initrd, agent_socket and console_log must be absolute paths, got '", *path,
          "'"));
    }
  }
  if (!spec.shared_dir.empty() && spec.shared_dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("shared_dir must be an absolute path, got '", spec.shared_dir, "'"));
  }
  for (const auto* path : {&spec.memory_file, &spec.restore_state}) {
    if (!path->empty() && (*path)[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "memory_file and restore_state must be absolute paths, got '", *path, "'"));
    }
  }
  if (!spec.restore_state.empty() && spec.memory_file.empty()) {
    return absl::InvalidArgumentError("restore_state needs the template's memory_file");
  }
  if (spec.shared_fs_transport == SharedFsTransport::kVirtiofs && !spec.shared_dir.empty() &&
      !spec.memory_file.empty()) {
    return absl::InvalidArgumentError(
        "a VM with a memory file (template or clone) cannot share a directory over virtiofs: "
        "use 9p");
  }
  if (spec.agent_socket.size() >= 108) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent socket path is too long for a unix socket: ", spec.agent_socket));
  }
  std::set<std::string> ids;
  std::set<uint32_t> indexes;
  for (const VmDisk& disk : spec.disks) {
    if (auto status = ValidateDisk(disk); !status.ok()) return status;
    if (!ids.insert(disk.id).second || !indexes.insert(disk.index).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("disk ", disk.id, ": duplicate id or index ", disk.index));
    }
  }
  for (const VmNic& nic : spec.nics) {
    if (!ValidName(nic.tap, "_.-", 15)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid tap name '", nic.tap, "'"));
    }
    if (!ValidMac(nic.mac)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid MAC '", nic.mac, "'"));
    }
    if (nic.netns_path != spec.nics.front().netns_path) {
      return absl::InvalidArgumentError("all NICs of a VM must be in one network namespace");
    }
  }
  return absl::OkStatus();
}

// The text between `open` and the next `close` in `element`, with the entities XmlEscape writes
// decoded.
std::string Between(absl::string_view element, absl::string_view open, absl::string_view close) {
  const size_t start = element.find(open);
  if (start == absl::string_view::npos) return "";
  const size_t from = start + open.size();
  const size_t end = element.find(close, from);
  if (end == absl::string_view::npos) return "";
  return absl::StrReplaceAll(
      element.substr(from, end - from),
      {{"&apos;", "'"}, {"&quot;", "\""}, {"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}});
}

std::string DiskElement(const VmDisk& disk) {
  return absl::StrFormat(
      "    <disk type='%s' device='disk'>\n"
      "      <driver name='qemu' type='%s'/>\n"
      "      <source %s='%s'/>\n"
      "      <target dev='%s' bus='scsi'/>\n"
      "%s"
      "      <serial>%s</serial>\n"
      "      <alias name='ua-%s'/>\n"
      "      <address type='drive' controller='0' bus='0' target='%d' unit='0'/>\n"
      "    </disk>\n",
      disk.path.rfind("/dev/", 0) == 0 ? "block" : "file", disk.format,
      disk.path.rfind("/dev/", 0) == 0 ? "dev" : "file", XmlEscape(disk.path),
      ScsiTargetName(disk.index), disk.read_only ? "      <readonly/>\n" : "", disk.id, disk.id,
      disk.index);
}

// QEMU's option syntax: a comma inside a value is written twice.
std::string QemuOptValue(absl::string_view value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

void AppendQemuArg(std::string& xml, absl::string_view arg) {
  absl::StrAppend(&xml, "    <qemu:arg value='", XmlEscape(arg), "'/>\n");
}

// Raw QEMU arguments libvirt has no element for: guest RAM in a file (templates and clones), the
// deferred incoming migration of a clone, QEMU's own 9p server, and modern virtio-mmio (which
// vhost-user backends such as virtiofsd need).
std::string QemuCommandLine(const VmSpec& spec) {
  std::string args;
  const bool virtiofs =
      !spec.shared_dir.empty() && spec.shared_fs_transport == SharedFsTransport::kVirtiofs;
  if (virtiofs) {
    AppendQemuArg(args, "-global");
    AppendQemuArg(args, "virtio-mmio.force-legacy=false");
  }
  if (!spec.memory_file.empty()) {
    // Same object id in template and clone: the migration stream names RAM blocks by it.
    AppendQemuArg(args, "-object");
    AppendQemuArg(args, absl::StrFormat(
                            "memory-backend-file,id=%s,mem-path=%s,size=%dM,share=%s",
                            kTemplateRamId, QemuOptValue(spec.memory_file), spec.memory_mib,
                            spec.restore_state.empty() ? "on" : "off"));
    AppendQemuArg(args, "-machine");
    AppendQemuArg(args, absl::StrCat("memory-backend=", kTemplateRamId));
  }
  if (!spec.restore_state.empty()) {
    AppendQemuArg(args, "-incoming");
    AppendQemuArg(args, "defer");
  }
  if (!spec.shared_dir.empty() && spec.shared_fs_transport == SharedFsTransport::k9p) {
    // multidevs=remap: the export spans host mounts (one bind per volume); without it inode
    // numbers of different mounts could collide in the guest.
    AppendQemuArg(args, "-fsdev");
    AppendQemuArg(args, absl::StrCat("local,id=podvisor-fs0,security_model=none,multidevs=remap,"
                                     "path=",
                                     QemuOptValue(spec.shared_dir)));
    AppendQemuArg(args, "-device");
    AppendQemuArg(args, absl::StrCat("virtio-9p-device,fsdev=podvisor-fs0,mount_tag=",
                                     kSharedFsTag));
  }
  if (args.empty()) return "";
  return absl::StrCat("  <qemu:commandline>\n", args, "  </qemu:commandline>\n");
}

}  // namespace

std::string DomainName(absl::string_view id) { return absl::StrCat(kVmNamePrefix, id); }

std::vector<VmDisk> ParseDomainDisks(absl::string_view xml) {
  std::vector<VmDisk> disks;
  for (size_t pos = xml.find("<disk "); pos != absl::string_view::npos;
       pos = xml.find("<disk ", pos + 1)) {
    const size_t end = xml.find("</disk>", pos);
    if (end == absl::string_view::npos) break;
    const absl::string_view element = xml.substr(pos, end - pos);
    VmDisk d;
    d.id = Between(element, "<serial>", "</serial>");
    if (d.id.empty()) continue;
    d.path = Between(element, "<source file='", "'");
    if (d.path.empty()) d.path = Between(element, "<source dev='", "'");
    d.read_only = absl::StrContains(element, "<readonly/>");
    if (absl::StrContains(Between(element, "<driver ", "/>"), "type='qcow2'")) d.format = "qcow2";
    const std::string address = Between(element, "<address type='drive'", "/>");
    uint32_t index = 0;
    if (absl::SimpleAtoi(Between(address, "target='", "'"), &index)) d.index = index;
    disks.push_back(std::move(d));
  }
  return disks;
}

std::string XmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&apos;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string ConsolePipePath(const std::string& console_log) { return console_log + ".pipe"; }

std::string QemuSandboxConf(bool on) {
  return absl::StrCat("seccomp_sandbox = ", on ? 1 : 0, "\n");
}

std::string KernelCommandLine(const DomainOptions& options, absl::string_view extra) {
  // panic=-1 reboots at once on a panic (e.g. PID 1 exiting) and <on_reboot>destroy ends QEMU,
  // so a dead guest is a dead domain. tsc_early_khz keeps microvm boots from hanging when PIT
  // calibration fails under load.
  // The guest kernel's CPU vulnerability mitigations stay on unless the configuration turns them
  // off (hypervisor.guest_mitigations): a container owns its guest kernel, but Spectre-class
  // leaks between the guest's own processes are still the guest's to prevent.
  std::string line = "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests";
  if (!options.guest_mitigations) absl::StrAppend(&line, " mitigations=off");
  if (options.tsc_khz > 0) absl::StrAppend(&line, " tsc_early_khz=", options.tsc_khz);
  if (!extra.empty()) absl::StrAppend(&line, " ", extra);
  return line;
}

absl::StatusOr<std::string> BuildDiskXml(const VmDisk& disk) {
  if (auto status = ValidateDisk(disk); !status.ok()) return status;
  return DiskElement(disk);
}

absl::StatusOr<std::string> BuildDomainXml(const VmSpec& spec, const DomainOptions& options) {
  if (auto status = ValidateSpec(spec); !status.ok()) return status;
  if (options.accelerator != "tcg" && options.accelerator != "kvm") {
    return absl::InvalidArgumentError(
        absl::StrCat("accelerator must be tcg or kvm, got '", options.accelerator, "'"));
  }
  std::string xml = absl::StrFormat(
      "<domain type='%s' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
      "  <name>%s</name>\n"
      "  <memory unit='MiB'>%d</memory>\n"
      "%s"
      "  <vcpu>%d</vcpu>\n"
      "  <os>\n"
      "    <type arch='x86_64' machine='microvm'>hvm</type>\n"
      "    <kernel>%s</kernel>\n"
      "    <initrd>%s</initrd>\n"
      "    <cmdline>%s</cmdline>\n"
      "  </os>\n"
      "  <features><acpi/>%s</features>\n"
      "  <clock offset='utc'/>\n"
      "  <on_poweroff>destroy</on_poweroff>\n"
      "  <on_reboot>destroy</on_reboot>\n"
      "  <on_crash>destroy</on_crash>\n"
      "  <devices>\n"
      "    <emulator>%s</emulator>\n"
      "    <controller type='usb' model='none'/>\n"
      "    <serial type='file'>\n"
      "      <source path='%s' append='on'/>\n"
      "      <target port='0'/>\n"
      "    </serial>\n"
      "    <controller type='virtio-serial' index='0'>\n"
      "      <address type='virtio-mmio'/>\n"
      "    </controller>\n"
      "    <channel type='unix'>\n"
      "      <source mode='bind' path='%s'/>\n"
      "      <target type='virtio' name='%s'/>\n"
      "      <address type='virtio-serial' controller='0' bus='0' port='1'/>\n"
      "    </channel>\n"
      "    <controller type='scsi' index='0' model='virtio-scsi'>\n"
      "      <address type='virtio-mmio'/>\n"
      "    </controller>\n",
      options.accelerator == "kvm" ? "kvm" : "qemu", DomainName(spec.id), spec.memory_mib,
      // virtiofsd maps guest RAM: it must be shared memory.
      spec.shared_dir.empty() || spec.shared_fs_transport != SharedFsTransport::kVirtiofs ? ""
                              : "  <memoryBacking><source type='memfd'/><access mode='shared'/>"
                                "</memoryBacking>\n",
      spec.vcpus, XmlEscape(spec.kernel), XmlEscape(spec.initrd),
      XmlEscape(KernelCommandLine(options, spec.extra_kernel_args)),
      options.accelerator == "tcg" && options.tcg_tb_cache_mib > 0
          ? absl::StrFormat("<tcg><tb-cache unit='MiB'>%d</tb-cache></tcg>",
                            options.tcg_tb_cache_mib)
          : "",
      XmlEscape(options.emulator),
      XmlEscape(options.console_log_max_bytes > 0 ? ConsolePipePath(spec.console_log)
                                                  : spec.console_log),
      XmlEscape(spec.agent_socket), kAgentPortName);
  for (const VmDisk& disk : spec.disks) xml += DiskElement(disk);
  for (const VmNic& nic : spec.nics) {
    absl::StrAppendFormat(&xml,
                          "    <interface type='ethernet'>\n"
                          "      <mac address='%s'/>\n"
                          "      <target dev='%s' managed='no'/>\n"
                          "      <model type='virtio'/>\n"
                          "      <address type='virtio-mmio'/>\n"
                          "    </interface>\n",
                          absl::AsciiStrToLower(nic.mac), nic.tap);
  }
  if (!spec.shared_dir.empty() && spec.shared_fs_transport == SharedFsTransport::kVirtiofs) {
    // chroot sandbox: virtiofsd stays in the host's mount namespace, so bind mounts made under
    // the shared directory after the VM started (one per container volume) reach the guest.
    absl::StrAppendFormat(&xml,
                          "    <filesystem type='mount' accessmode='passthrough'>\n"
                          "      <driver type='virtiofs' queue='1024'/>\n"
                          "      <binary path='%s'><sandbox mode='chroot'/></binary>\n"
                          "      <source dir='%s'/>\n"
                          "      <target dir='%s'/>\n"
                          "      <address type='virtio-mmio'/>\n"
                          "    </filesystem>\n",
                          XmlEscape(options.virtiofsd), XmlEscape(spec.shared_dir), kSharedFsTag);
  }
  xml +=
      "    <memballoon model='none'/>\n"
      "  </devices>\n";
  xml += QemuCommandLine(spec);
  xml +=
      "  <qemu:capabilities>\n"
      "    <qemu:del capability='cpu-unavailable-features'/>\n"
      "  </qemu:capabilities>\n"
      "</domain>\n";
  return xml;
}

}  // namespace podvisor
