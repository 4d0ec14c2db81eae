#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "image/image_service.h"
#include "host-runtime/host_runtime.h"
#include "network/pod_network.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_events.h"
#include "pod-sandbox/runtime_handler.h"
#include "pod-sandbox/sandbox_controller.h"
#include "store/store.h"
#include "streaming/streaming_server.h"

namespace podvisor::cri {

// What the CRI handlers act on: the daemon's configuration and its controllers. Owned by the
// Daemon, outliving the gRPC server.
struct Services {
  Config config;
  RecordStore* records = nullptr;
  SandboxController* sandboxes = nullptr;
  PodNetworkManager* network = nullptr;
  ImageController* images = nullptr;
  ContainerController* containers = nullptr;
  // The host handler (docs/runtime-handlers.md); null when it cannot run on this node (no crun).
  // Calls on its sandboxes and containers go to it, the others to the VM controllers above.
  HostRuntime* host = nullptr;
  HostPodPolicy host_pods = HostPodPolicy::kHost;
  // Container and sandbox lifecycle events of both handlers (GetContainerEvents).
  ContainerEventBus* events = nullptr;
  // The server behind Exec/Attach/PortForward URLs; null until it started.
  streaming::StreamingServer* streaming = nullptr;

  // Whether an id (or unique prefix) names one of the host handler's sandboxes / containers.
  bool HostSandbox(const std::string& id) const { return host && host->OwnsSandbox(id); }
  bool HostContainer(const std::string& id) const { return host && host->OwnsContainer(id); }
  // Set by the daemon (thread-safe): the effective configuration after config reloads, as
  // ConfigToJson gives it, and the URL of the metrics endpoint (empty while disabled).
  std::function<nlohmann::json()> effective_config;
  std::function<std::string()> metrics_url;
};

}  // namespace podvisor::cri
