#pragma once

// The streaming server's runtime in podvisord: exec, attach and port-forward sessions reach the
// pod VM through its guest agent. See docs/streaming.md ("The runtime side").

#include <string>

#include "absl/time/time.h"
#include "common/config.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/sandbox_controller.h"
#include "streaming/streaming_server.h"

namespace podvisor {

struct ContainerStreamingOptions {
  absl::Duration agent_call_timeout = absl::Seconds(30);
  // After a process exited, how long its output may still trail behind.
  absl::Duration output_drain_timeout = absl::Seconds(3);
  // How often a session waiting for its process checks whether the client left.
  absl::Duration poll_interval = absl::Milliseconds(50);
  // Output of an exec or a forwarded connection in flight per stream (sent by the guest, not yet
  // taken by the client): streaming.output_window_kib.
  size_t output_window = 1 << 20;
  // Output queued for one attacher before it is detached (the container is not held back).
  size_t attach_max_queued = 4 << 20;
};

// streaming.output_window_kib; the rest keeps its defaults.
ContainerStreamingOptions ContainerStreamingOptionsFromConfig(const StreamingConfig& config);

// Exec: a process started by the agent in the container, its stdio on agent streams pumped to and
// from the session's streams, resizes sent as ResizeTty, killed when the client leaves. Attach: an
// output consumer on the container (next to its log writer) and writes to its stdin. PortForward:
// an agent port-forward stream per connection. Thread-safe; sessions run in parallel.
class ContainerStreamingRuntime : public streaming::StreamingRuntime {
 public:
  ContainerStreamingRuntime(ContainerStreamingOptions options, ContainerController* containers,
                            SandboxController* sandboxes)
      : options_(options), containers_(containers), sandboxes_(sandboxes) {}

  absl::StatusOr<int> Exec(const streaming::ExecRequest& request,
                           const streaming::SessionStreams& streams) override;
  absl::Status Attach(const streaming::AttachRequest& request,
                      const streaming::SessionStreams& streams) override;
  absl::Status PortForward(const std::string& sandbox_id, int32_t port, streaming::ByteSource& in,
                           streaming::ByteSink& out, const absl::Notification& done) override;

 private:
  const ContainerStreamingOptions options_;
  ContainerController* const containers_;
  SandboxController* const sandboxes_;
};

}  // namespace podvisor
