#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace podvisor {

// podvisord: owns the durable store, the controllers and the gRPC server on the CRI socket.
//
// Start() takes the root directory's lock (a second daemon on the same root is refused), replaces
// a stale socket (but never a live one), opens the store, and serves. Shutdown() stops accepting,
// lets in-flight calls finish (bounded), and leaves pods running.
class Daemon {
 public:
  virtual ~Daemon() = default;
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const Config& config);
  virtual void Shutdown() = 0;
};

}  // namespace podvisor
