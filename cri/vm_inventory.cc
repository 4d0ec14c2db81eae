#include "cri/vm_inventory.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "pod-sandbox/host_stats.h"

namespace podvisor::cri {
namespace {

VmRow RowOf(SandboxController& sandboxes, const Sandbox& sb, bool with_memory) {
  const SandboxMetadata& m = sb.metadata;
  VmRow row;
  row.id = m.id;
  row.name = absl::StrCat(m.pod_namespace, "/", m.pod_name);
  row.handler = "vm";  // the backend that runs it: every sandbox is a VM (whatever RuntimeClass)
  row.vcpus = m.vcpus;
  row.memory_mib = m.memory_mib;
  row.created_at_ns = m.created_at_ns;
  row.console_log = absl::StrCat(m.state_dir, "/console.log");
  const bool ready = sb.status.state == SandboxState::kReady;
  row.state = ready ? "ready" : "notready";
  row.accelerator = sb.status.accelerator;
  row.boot_ms = sb.status.boot_ms;
  row.qemu_pid = ready ? static_cast<pid_t>(sb.status.vm_pid) : 0;
  row.agent = "none";
  if (ready) {
    absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandboxes.Agent(m.id);
    row.agent = agent.ok() && (*agent)->connected() ? "connected" : "lost";
  }
  if (with_memory && row.qemu_pid > 0) {
    if (absl::StatusOr<ProcessCost> cost = ReadProcessCost(row.qemu_pid); cost.ok()) {
      row.rss_bytes = cost->rss_bytes;
    }
    if (absl::StatusOr<uint64_t> pss = ReadPssBytes(row.qemu_pid); pss.ok()) row.pss_bytes = *pss;
  }
  return row;
}

}  // namespace

std::vector<VmRow> ListVms(SandboxController& sandboxes, bool with_memory) {
  std::vector<Sandbox> all = sandboxes.List(SandboxFilter{});
  std::sort(all.begin(), all.end(), [](const Sandbox& a, const Sandbox& b) {
    return a.metadata.created_at_ns < b.metadata.created_at_ns;
  });
  std::vector<VmRow> rows;
  rows.reserve(all.size());
  for (const Sandbox& sb : all) rows.push_back(RowOf(sandboxes, sb, with_memory));
  return rows;
}

absl::StatusOr<VmRow> FindVm(SandboxController& sandboxes, absl::string_view id_or_prefix) {
  if (id_or_prefix.empty()) return absl::InvalidArgumentError("no pod sandbox id given");
  std::vector<Sandbox> matches;
  for (Sandbox& sb : sandboxes.List(SandboxFilter{})) {
    if (sb.metadata.id == id_or_prefix) return RowOf(sandboxes, sb, true);
    if (absl::StartsWith(sb.metadata.id, id_or_prefix)) matches.push_back(std::move(sb));
  }
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat("no pod sandbox with id ", id_or_prefix));
  }
  if (matches.size() > 1) {
    std::vector<std::string> ids;
    for (const Sandbox& sb : matches) ids.push_back(ShortId(sb.metadata.id));
    return absl::InvalidArgumentError(absl::StrCat("pod sandbox id prefix ", id_or_prefix,
                                                   " is ambiguous: ", absl::StrJoin(ids, ", ")));
  }
  return RowOf(sandboxes, matches.front(), true);
}

absl::StatusOr<uint64_t> ParsePssBytes(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, "Pss:")) continue;
    line = absl::StripAsciiWhitespace(line);
    if (!absl::ConsumeSuffix(&line, "kB")) break;
    uint64_t kib = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) break;
    return kib * 1024;
  }
  return absl::InvalidArgumentError("smaps_rollup: no Pss line in kB");
}

absl::StatusOr<uint64_t> ReadPssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  if (!in) return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
  std::stringstream text;
  text << in.rdbuf();
  return ParsePssBytes(text.str());
}

nlohmann::json VmRowToJson(const VmRow& r) {
  return {{"id", r.id},
          {"name", r.name},
          {"state", r.state},
          {"handler", r.handler},
          {"qemu_pid", r.qemu_pid},
          {"accelerator", r.accelerator},
          {"vcpus", r.vcpus},
          {"memory_mib", r.memory_mib},
          {"rss_bytes", r.rss_bytes},
          {"pss_bytes", r.pss_bytes},
          {"boot_ms", r.boot_ms},
          {"created_at_ns", r.created_at_ns},
          {"agent", r.agent},
          {"console_log", r.console_log}};
}

}  // namespace podvisor::cri
