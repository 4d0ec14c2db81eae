#pragma once

// PortForwardRequest: a TCP connection from the guest to 127.0.0.1:port (or [::1]:port) whose
// bytes travel on one stream of the channel.

#include "agent/result.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

class AgentServer;

// Connects, then relays until both directions have ended; returns once connected.
Error StartPortForward(AgentServer* server, const v1::PortForwardRequest& req);

}  // namespace podvisor::agent
