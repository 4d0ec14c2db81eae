#include "agent/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace podvisor::agent {
namespace {
std::atomic<bool> verbose{false};
}

void SetAgentLogVerbose(bool v) { verbose = v; }

void AgentLog(LogSeverity severity, const std::string& message) {
  if (severity == LogSeverity::kDebug && !verbose) return;
  static const char* const kNames[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  char prefix[64];
  int n = snprintf(prefix, sizeof(prefix), "[%5ld.%03ld] podvisor-agent %s ", (long)ts.tv_sec,
                   ts.tv_nsec / 1000000, kNames[static_cast<int>(severity)]);
  std::string line(prefix, n);
  line += message;
  line += '\n';
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace podvisor::agent
