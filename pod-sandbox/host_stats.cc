#include "pod-sandbox/host_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "network/netns.h"

namespace podvisor {
namespace {

std::string Slurp(const std::string& path, bool* ok) {
  std::ifstream in(path);
  *ok = static_cast<bool>(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "VmRSS:     1234 kB" -> bytes.
uint64_t StatusKb(absl::string_view status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    uint64_t kb = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb)) return kb * 1024;
  }
  return 0;
}

}  // namespace

absl::StatusOr<ProcessCost> ParseProcessCost(absl::string_view stat, absl::string_view status,
                                             int64_t ticks) {
  // The command name (field 2) is in parentheses and may hold spaces: fields count from the
  // last ')'.
  size_t close = stat.rfind(')');
  if (close == absl::string_view::npos || ticks <= 0) {
    return absl::InvalidArgumentError("malformed /proc stat");
  }
  std::vector<absl::string_view> f =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipWhitespace());
  // f[0] is field 3 (state): field n is f[n - 3].
  if (f.size() < 13) return absl::InvalidArgumentError("short /proc stat");
  uint64_t minflt = 0, majflt = 0, utime = 0, stime = 0;
  if (!absl::SimpleAtoi(f[7], &minflt) || !absl::SimpleAtoi(f[9], &majflt) ||
      !absl::SimpleAtoi(f[11], &utime) || !absl::SimpleAtoi(f[12], &stime)) {
    return absl::InvalidArgumentError("malformed /proc stat fields");
  }
  ProcessCost cost;
  cost.cpu_ns = (utime + stime) * (1000000000ull / static_cast<uint64_t>(ticks));
  cost.minor_faults = minflt;
  cost.major_faults = majflt;
  cost.rss_bytes = StatusKb(status, "VmRSS");
  cost.anon_bytes = StatusKb(status, "RssAnon");
  cost.shmem_bytes = StatusKb(status, "RssShmem");
  return cost;
}

absl::StatusOr<ProcessCost> ReadProcessCost(pid_t pid) {
  if (pid <= 0) return absl::NotFoundError("no process");
  bool ok_stat = false, ok_status = false;
  const std::string dir = absl::StrCat("/proc/", pid);
  std::string stat = Slurp(dir + "/stat", &ok_stat);
  std::string status = Slurp(dir + "/status", &ok_status);
  if (!ok_stat || !ok_status || stat.empty()) {
    return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
  }
  return ParseProcessCost(stat, status, sysconf(_SC_CLK_TCK));
}

std::vector<InterfaceUsage> ParseNetDev(absl::string_view text) {
  std::vector<InterfaceUsage> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;  // the two header lines
    InterfaceUsage u;
    u.name = std::string(absl::StripAsciiWhitespace(line.substr(0, colon)));
    if (u.name.empty() || u.name == "lo") continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(line.substr(colon + 1), ' ', absl::SkipWhitespace());
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs ...
    if (f.size() < 16) continue;
    if (!absl::SimpleAtoi(f[0], &u.rx_bytes) || !absl::SimpleAtoi(f[2], &u.rx_errors) ||
        !absl::SimpleAtoi(f[8], &u.tx_bytes) || !absl::SimpleAtoi(f[10], &u.tx_errors)) {
      continue;
    }
    out.push_back(std::move(u));
  }
  return out;
}

absl::StatusOr<std::vector<InterfaceUsage>> ReadNetnsInterfaces(const std::string& netns_path) {
  std::string text;
  absl::Status s = network::RunInNetns(netns_path, [&]() -> absl::Status {
    // thread-self: this thread's namespace (/proc/self/net is the main thread's).
    bool ok = false;
    text = Slurp("/proc/thread-self/net/dev", &ok);
    if (!ok) return absl::InternalError("read /proc/thread-self/net/dev");
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return ParseNetDev(text);
}

}  // namespace podvisor
