#pragma once

// The agent's log: one line per message on stderr (the guest console, ttyS0/hvc0).

#include <string>

namespace podvisor::agent {

enum class LogSeverity { kDebug, kInfo, kWarning, kError };

void SetAgentLogVerbose(bool verbose);
void AgentLog(LogSeverity severity, const std::string& message);

}  // namespace podvisor::agent
