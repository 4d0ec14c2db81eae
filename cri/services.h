#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "image/image_service.h"
#include "network/pod_network.h"
#include "pod-sandbox/container_controller.h"
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
  // The server behind Exec/Attach/PortForward URLs; null until it started.
  streaming::StreamingServer* streaming = nullptr;
  // Set by the daemon (thread-safe): the effective configuration after config reloads, as
  // ConfigToJson gives it, and the URL of the metrics endpoint (empty while disabled).
  std::function<nlohmann::json()> effective_config;
  std::function<std::string()> metrics_url;
};

}  // namespace podvisor::cri
