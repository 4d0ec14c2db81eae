#pragma once

#include <sstream>
#include <string_view>

namespace podvisor {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Sets the lowest level written. Thread-safe.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug" | "info" | "warning" | "error"; unknown names give kInfo.
LogLevel ParseLogLevel(std::string_view name);
bool LogEnabled(LogLevel level);

// Writes one line to stderr: "<RFC3339 time> <LEVEL> <message>". Lines from different threads
// never interleave. journald adds its own time stamp; keeping ours makes plain stderr readable.
void WriteLog(LogLevel level, std::string_view message);

// Collects one log line and writes it when destroyed.
class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  ~LogLine() { WriteLog(level_, stream_.str()); }
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Turns a finished LogLine expression into void, so that PV_LOG can be one conditional
// expression (`&` binds looser than `<<`).
struct LogLineVoidify {
  void operator&(const LogLine&) const {}
};

}  // namespace podvisor

// PV_LOG(kInfo) << "started " << n << " things";  The message is not built when disabled. An
// expression, not an if/else: `if (x) PV_LOG(kDebug) << ...; else ...` means what it says.
#define PV_LOG(level)                                       \
  !::podvisor::LogEnabled(::podvisor::LogLevel::level)      \
      ? (void)0                                             \
      : ::podvisor::LogLineVoidify() & ::podvisor::LogLine(::podvisor::LogLevel::level)
