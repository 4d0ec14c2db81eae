#include "cri/vm_templates.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/template_dir.h"
#include "network/netns.h"
#include "network/tap.h"
#include "pod-sandbox/agent_client.h"

namespace podvisor {
namespace {

constexpr char kTemplateTap[] = "pvtmpl0";

std::string NetnsOf(const std::string& build_dir) { return build_dir + "/netns"; }

absl::StatusOr<VmNic> MakeTemplateNic(const std::string& build_dir) {
  const std::string netns = NetnsOf(build_dir);
  if (absl::Status s = network::CreateNetns(netns); !s.ok()) return s;
  if (absl::Status s = network::CreateLoneTap(netns, kTemplateTap); !s.ok()) return s;
  return VmNic{kTemplateTap, kTemplateMac, netns};
}

void RemoveTemplateNic(const std::string& build_dir) {
  // The tap goes with its namespace.
  if (absl::Status s = network::RemoveNetns(NetnsOf(build_dir)); !s.ok()) {
    PV_LOG(kWarning) << "template network namespace: " << s.message();
  }
}

absl::Status WaitTemplateAgent(const std::string& socket, absl::Duration timeout) {
  AgentClient::Options o;
  o.host_version = "podvisord (template)";
  o.connect_timeout = timeout;
  o.handshake_timeout = timeout;
  // No ping may be in flight when the template is saved: its answer would reach the first
  // clone's host.
  o.heartbeat_interval = absl::Hours(1);
  o.dead_after = absl::Hours(2);
  absl::StatusOr<std::unique_ptr<AgentClient>> agent = AgentClient::Connect(socket, std::move(o));
  if (!agent.ok()) return agent.status();
  (*agent)->Close();
  return absl::OkStatus();
}

}  // namespace

std::string TemplateDir(const Config& config) {
  if (!config.hypervisor.template_dir.empty()) return config.hypervisor.template_dir;
  return DefaultTemplateDir(config.state_dir);
}

absl::StatusOr<std::unique_ptr<VmTemplateStore>> NewDaemonTemplateStore(
    const Config& config, Hypervisor* hypervisor, const std::string& kernel,
    const std::string& initrd) {
  const HypervisorConfig& h = config.hypervisor;
  if (!h.templates) return nullptr;
  if (!h.shared_filesystem) {
    PV_LOG(kInfo) << "VM templates off: they need hypervisor.shared_filesystem";
    return nullptr;
  }
  VmTemplateOptions o;
  o.dir = TemplateDir(config);
  if (o.dir.empty() || o.dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("config key 'hypervisor.template_dir': must be an absolute path, got '",
                     o.dir, "'"));
  }
  o.kernel = kernel;
  o.initrd = initrd;
  o.boot_timeout = absl::Seconds(std::max<int64_t>(h.boot_timeout_seconds, 60));
  const uint32_t vcpus = static_cast<uint32_t>(h.default_vcpus);
  if (h.template_memory_mib.empty()) {
    o.shapes.push_back(VmShape{vcpus, static_cast<uint64_t>(h.default_memory_mib)});
  }
  for (int64_t mib : h.template_memory_mib) {
    o.shapes.push_back(VmShape{vcpus, static_cast<uint64_t>(mib)});
  }
  o.make_nic = &MakeTemplateNic;
  o.remove_nic = &RemoveTemplateNic;
  o.wait_ready = &WaitTemplateAgent;
  return std::make_unique<VmTemplateStore>(hypervisor, std::move(o));
}

}  // namespace podvisor
