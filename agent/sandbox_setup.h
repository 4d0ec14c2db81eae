#pragma once

// SetupSandboxRequest: hostname, resolv.conf, hosts, clock, entropy, sysctls.

#include "agent/options.h"
#include "agent/result.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

// Checks every field before anything is changed.
Error ValidateSandboxSetup(const v1::SetupSandboxRequest& req);

// Applies `req`; files go under options.root. In --no-pid1 mode the host-wide changes
// (sethostname, the clock, the RNG) are skipped.
Error ApplySandboxSetup(const AgentOptions& options, const v1::SetupSandboxRequest& req);

// Shared validators (also used by the network setup).
bool IsValidHostname(const std::string& name);
bool IsValidIp(const std::string& ip);

}  // namespace podvisor::agent
