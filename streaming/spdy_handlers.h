#pragma once

// The Kubernetes subprotocols over an upgraded SPDY connection (internal to streaming/):
// remote command (v4/v3/v2.channel.k8s.io, channel.k8s.io) and portforward.k8s.io.

#include <memory>
#include <string>
#include <variant>

#include "streaming/server_context.h"
#include "streaming/spdy_connection.h"

namespace podvisor::streaming {

inline constexpr const char* kStreamProtocolV4 = "v4.channel.k8s.io";
inline constexpr const char* kStreamProtocolV3 = "v3.channel.k8s.io";
inline constexpr const char* kStreamProtocolV2 = "v2.channel.k8s.io";
inline constexpr const char* kStreamProtocolV1 = "channel.k8s.io";
inline constexpr const char* kPortForwardProtocolV1 = "portforward.k8s.io";

using RemoteCommandRequest = std::variant<ExecRequest, AttachRequest>;

// Both take a connection not yet started, start it, and run until it closes. Call on the
// connection's executor.
void ServeRemoteCommandOverSpdy(const std::shared_ptr<SpdyConnection>& connection,
                                RemoteCommandRequest request, const std::string& protocol,
                                ServerContext* context);
void ServePortForwardOverSpdy(const std::shared_ptr<SpdyConnection>& connection,
                              PortForwardRequest request, ServerContext* context);

}  // namespace podvisor::streaming
