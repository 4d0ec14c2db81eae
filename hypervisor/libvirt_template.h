#pragma once

// The libvirt side of template VMs (internal to the libvirt backend): saving a template's device
// state and restoring a clone from it through libvirt's QEMU monitor passthrough, since libvirt's
// own save/restore refuses x-ignore-shared images (docs/hypervisor.md, "Template clones").
#include <libvirt/libvirt.h>

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace podvisor {

// Migrates the running template `dom` to `state_file` with x-ignore-shared: its RAM (a shared
// memory-backend-file) is not written, only ~60 KB of device state. Returns once QEMU reports
// the migration completed (the guest is then stopped); the caller destroys the domain.
absl::Status SaveDomainState(virDomainPtr dom, const std::string& state_file,
                             absl::Duration timeout);

// Starts the incoming migration of a clone created with `-incoming defer` from `state_file`
// and waits until the guest runs (libvirt's start has already asked for it to continue).
absl::Status RestoreDomainState(virDomainPtr dom, const std::string& state_file,
                                absl::Duration timeout);

// "qemu <version> libvirt <version>" of the connection, as numbers.
std::string LibvirtVersions(virConnectPtr conn);

}  // namespace podvisor
