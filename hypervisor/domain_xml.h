#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hypervisor/hypervisor.h"

namespace podvisor {

// How the libvirt domain for a VmSpec is built: machine and host facts that are not per VM.
struct DomainOptions {
  std::string accelerator = "tcg";   // "tcg" -> <domain type='qemu'>, "kvm" -> type='kvm'
  std::string emulator = "/usr/bin/qemu-system-x86_64";
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
  uint64_t tsc_khz = 0;              // tsc_early_khz=; required on microvm (see VM-FACTS)
  // TCG translation cache size; QEMU's default lets an idle guest's cache grow to ~35 MiB,
  // 16 MiB saves ~20 MiB per VM without slowing the boot (docs/hypervisor.md). 0: QEMU default.
  uint32_t tcg_tb_cache_mib = 16;
  // false: the guest kernel gets mitigations=off (config hypervisor.guest_mitigations; the cost
  // is in docs/performance.md).
  bool guest_mitigations = true;
  // > 0: the serial console goes to ConsolePipePath(console_log), a FIFO that a console logger
  // (hypervisor/console_log.h) copies into console_log keeping at most this many bytes
  // (hypervisor.console_log_max_bytes). 0: QEMU appends to console_log itself, without a bound.
  int64_t console_log_max_bytes = 0;
};

// The FIFO QEMU's serial chardev writes when the console log is bounded.
std::string ConsolePipePath(const std::string& console_log);

// The qemu.conf setting of QEMU's own seccomp filter: on, libvirt starts QEMU with
// `-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny`.
std::string QemuSandboxConf(bool on);
// The QEMU object id of guest RAM kept in a file (VmSpec::memory_file).
inline constexpr char kTemplateRamId[] = "podvisor-ram";

// The domain name of a VM id.
std::string DomainName(absl::string_view id);

// The kernel command line every guest gets, followed by `extra`.
std::string KernelCommandLine(const DomainOptions& options, absl::string_view extra);

// Validates `spec` and renders the transient libvirt domain XML: microvm with ACPI, direct kernel
// boot, serial console to a file, the agent's virtio-serial port on a unix socket, a virtio-scsi
// controller with the disks, virtio-net NICs on existing taps, every virtio device on virtio-mmio,
// the shared directory over virtiofs (guest RAM then a shared memfd) or QEMU's 9p server, guest
// RAM in a file for templates and clones (a clone waiting for its incoming state), no balloon, destroy on poweroff/reboot/crash (so a guest panic ends QEMU), and the
// qemu:capabilities element that skips libvirt's per-create CPU feature checks.
absl::StatusOr<std::string> BuildDomainXml(const VmSpec& spec, const DomainOptions& options);

// The <disk> element for hot-plugging (and cold-plugging) `disk` on the virtio-scsi bus.
absl::StatusOr<std::string> BuildDiskXml(const VmDisk& disk);

// The <disk> elements of a live domain's XML (as libvirt prints it, single-quoted attributes):
// serial as id, source file or device as path, <readonly/>, and the drive address's target as
// index. Disks without a serial are left out (none of ours).
std::vector<VmDisk> ParseDomainDisks(absl::string_view xml);

// Escapes &, <, >, ' and " for XML attribute and text content.
std::string XmlEscape(absl::string_view text);

}  // namespace podvisor
