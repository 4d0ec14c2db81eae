#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace podvisor {

// podvisord: owns the durable store, the controllers and the gRPC server on the CRI socket.
//
// Start() takes the root directory's lock (a second daemon on the same root is refused), replaces
// a stale socket (but never a live one), opens the store, and serves. Shutdown() stops accepting,
// lets in-flight calls finish (bounded), and leaves pods running. Besides the CRI socket it serves
// Prometheus metrics (metrics.address) and the admin socket <state_dir>/admin.sock (podvisorctl).
class Daemon {
 public:
  virtual ~Daemon() = default;
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const Config& config);
  virtual void Shutdown() = 0;
  // Applies what can change while serving (log level, registry hosts, metrics address) from
  // `config` and logs each other changed key as needing a restart. Errors leave the old value.
  virtual void Reload(const Config& config) = 0;
};

}  // namespace podvisor
