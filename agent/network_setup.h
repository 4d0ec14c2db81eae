#pragma once

// SetupNetworkRequest: the guest NICs (found by MAC), their addresses, MTU, and the routes.

#include "agent/options.h"
#include "agent/result.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

Error ValidateNetworkSetup(const v1::SetupNetworkRequest& req);

// In --no-pid1 mode this refuses to run unless --allow-network was given (tests run the agent
// in a network namespace of their own).
Error ApplyNetworkSetup(const AgentOptions& options, const v1::SetupNetworkRequest& req);

}  // namespace podvisor::agent
