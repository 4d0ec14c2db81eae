// Version, Status, RuntimeConfig, UpdateRuntimeConfig.

#include "common/log.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "nlohmann/json.hpp"

#ifndef PODVISOR_VERSION_STRING
#error "PODVISOR_VERSION_STRING must be defined by the build"
#endif

namespace podvisor::cri {
namespace {

constexpr char kKubeletApiVersion[] = "0.1.0";
constexpr char kRuntimeName[] = "podvisor";
constexpr char kRuntimeApiVersion[] = "v1";
constexpr char kNetworkKind[] = "runtime";
constexpr char kNetworkRecord[] = "network";

void AddCondition(runtime::v1::RuntimeStatus* status, const char* type, bool ok,
                  const std::string& reason, const std::string& message) {
  runtime::v1::RuntimeCondition* c = status->add_conditions();
  c->set_type(type);
  c->set_status(ok);
  c->set_reason(reason);
  c->set_message(message);
}

}  // namespace

grpc::Status RuntimeService::Version(grpc::ServerContext*, const runtime::v1::VersionRequest*,
                                     runtime::v1::VersionResponse* response) {
  return Serve("Version", [&] {
    response->set_version(kKubeletApiVersion);
    response->set_runtime_name(kRuntimeName);
    response->set_runtime_version(PODVISOR_VERSION_STRING);
    response->set_runtime_api_version(kRuntimeApiVersion);
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::Status(grpc::ServerContext*, const runtime::v1::StatusRequest* request,
                                    runtime::v1::StatusResponse* response) {
  return Serve("Status", [&] {
    runtime::v1::RuntimeStatus* status = response->mutable_status();
    absl::Status runtime = services_->sandboxes->ReadyStatus();
    if (runtime.ok()) {
      AddCondition(status, "RuntimeReady", true, "", "");
    } else {
      AddCondition(status, "RuntimeReady", false,
                   absl::IsUnavailable(runtime) ? "RuntimeInitializing" : "HypervisorNotReady",
                   std::string(runtime.message()));
    }
    PodNetworkReadiness network = services_->network->Readiness();
    AddCondition(status, "NetworkReady", network.ready, network.reason, network.message);
    // Both handlers honour SupplementalGroupsPolicy and report ContainerStatus.user.
    response->mutable_features()->set_supplemental_groups_policy(true);
    for (const RuntimeHandlerInfo& h : RuntimeHandlers(services_->host != nullptr)) {
      runtime::v1::RuntimeHandler* handler = response->add_runtime_handlers();
      handler->set_name(h.name);
      handler->mutable_features()->set_recursive_read_only_mounts(h.recursive_read_only_mounts);
      handler->mutable_features()->set_user_namespaces(h.user_namespaces);
    }
    if (request->verbose()) {
      nlohmann::json info = services_->effective_config ? services_->effective_config()
                                                        : ConfigToJson(services_->config);
      (*response->mutable_info())["config"] = info.dump();
      if (services_->metrics_url) {
        const std::string url = services_->metrics_url();
        (*response->mutable_info())["metrics"] =
            nlohmann::json{{"enabled", !url.empty()}, {"url", url}}.dump();
      }
      absl::StatusOr<std::string> network = services_->records->Get(kNetworkKind, kNetworkRecord);
      if (network.ok()) (*response->mutable_info())["network"] = *network;
    }
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::RuntimeConfig(grpc::ServerContext*,
                                           const runtime::v1::RuntimeConfigRequest*,
                                           runtime::v1::RuntimeConfigResponse* response) {
  return Serve("RuntimeConfig", [&] {
    response->mutable_linux()->set_cgroup_driver(runtime::v1::CGROUPFS);
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::UpdateRuntimeConfig(grpc::ServerContext*,
                                                 const runtime::v1::UpdateRuntimeConfigRequest* request,
                                                 runtime::v1::UpdateRuntimeConfigResponse*) {
  return Serve("UpdateRuntimeConfig", [&]() -> absl::Status {
    const std::string& cidr = request->runtime_config().network_config().pod_cidr();
    if (cidr.empty()) return absl::OkStatus();  // kubelet sends empty updates; nothing to store
    nlohmann::json record = {{"pod_cidr", cidr}};
    if (absl::Status s = services_->records->Put(kNetworkKind, kNetworkRecord, record.dump());
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("store pod CIDR: ", s.message()));
    }
    PV_LOG(kInfo) << "pod CIDR set to " << cidr;
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
