#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "hypervisor/hypervisor.h"
#include "hypervisor/vm_template.h"

namespace podvisor {

// The daemon's template store for `config` (nullptr when templates are off): template NICs on
// lone taps in namespaces of their own, readiness by the agent's handshake.
absl::StatusOr<std::unique_ptr<VmTemplateStore>> NewDaemonTemplateStore(
    const Config& config, Hypervisor* hypervisor, const std::string& kernel,
    const std::string& initrd);

// The template directory `config` means (hypervisor.template_dir or its default).
std::string TemplateDir(const Config& config);

}  // namespace podvisor
