#pragma once

// The streaming server's runtime with both handlers behind it: sessions of host containers and
// pods run here (exec through `crun exec`, attach through the container's monitor, port-forward
// by a TCP connection made in the pod's network namespace, or the node's for a host-network
// pod); every other session goes to the VM handler's runtime.

#include <string>

#include "host-runtime/host_runtime.h"
#include "streaming/streaming_server.h"

namespace podvisor {

class HandlerStreamingRuntime : public streaming::StreamingRuntime {
 public:
  // `vm` and `host` outlive this; `host` may be null (no host handler on this node).
  HandlerStreamingRuntime(streaming::StreamingRuntime* vm, HostRuntime* host)
      : vm_(vm), host_(host) {}

  absl::StatusOr<int> Exec(const streaming::ExecRequest& request,
                           const streaming::SessionStreams& streams) override;
  absl::Status Attach(const streaming::AttachRequest& request,
                      const streaming::SessionStreams& streams) override;
  absl::Status PortForward(const std::string& sandbox_id, int32_t port, streaming::ByteSource& in,
                           streaming::ByteSink& out, const absl::Notification& done) override;

 private:
  streaming::StreamingRuntime* const vm_;
  HostRuntime* const host_;
};

}  // namespace podvisor
