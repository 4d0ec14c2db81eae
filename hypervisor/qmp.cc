#include "hypervisor/qmp.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace podvisor::qmp {
namespace {

using nlohmann::json;

std::string Command(absl::string_view name, json arguments = nullptr) {
  json cmd = {{"execute", std::string(name)}};
  if (!arguments.is_null()) cmd["arguments"] = std::move(arguments);
  return cmd.dump();
}

absl::StatusOr<json> ReturnOf(absl::string_view reply) {
  json parsed = json::parse(reply.begin(), reply.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InternalError(absl::StrCat("QMP reply is not a JSON object: ", reply));
  }
  if (auto err = parsed.find("error"); err != parsed.end()) {
    auto text = [&](const char* key) {
      if (!err->is_object()) return std::string();
      auto it = err->find(key);
      return it != err->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::string cls = text("class");
    std::string desc = text("desc");
    auto code = cls == "GenericError" ? absl::StatusCode::kFailedPrecondition
                                      : absl::StatusCode::kUnavailable;
    return absl::Status(code, absl::StrCat("QEMU: ", desc.empty() ? cls : desc));
  }
  auto ret = parsed.find("return");
  if (ret == parsed.end()) {
    return absl::InternalError(absl::StrCat("QMP reply has neither return nor error: ", reply));
  }
  return *ret;
}

}  // namespace

std::string SetIgnoreShared() {
  return Command("migrate-set-capabilities",
                 {{"capabilities", json::array({{{"capability", "x-ignore-shared"},
                                                 {"state", true}}})}});
}

std::string GetFd(absl::string_view fd_name) {
  return Command("getfd", {{"fdname", std::string(fd_name)}});
}

std::string MigrateToFd(absl::string_view fd_name) {
  return Command("migrate", {{"uri", absl::StrCat("fd:", fd_name)}});
}

std::string MigrateIncomingFromFd(absl::string_view fd_name) {
  return Command("migrate-incoming", {{"uri", absl::StrCat("fd:", fd_name)}});
}

std::string QueryMigrate() { return Command("query-migrate"); }
std::string QueryStatus() { return Command("query-status"); }

absl::StatusOr<std::string> ReplyReturn(absl::string_view reply) {
  absl::StatusOr<json> ret = ReturnOf(reply);
  if (!ret.ok()) return ret.status();
  return ret->dump();
}

absl::StatusOr<MigrationState> ParseQueryMigrate(absl::string_view reply) {
  absl::StatusOr<json> ret = ReturnOf(reply);
  if (!ret.ok()) return ret.status();
  if (!ret->is_object()) return absl::InternalError("query-migrate: return is not an object");
  MigrationState state;
  // QEMU leaves "status" out before any migration ran.
  auto text = [&](const char* key, const char* fallback) {
    auto it = ret->find(key);
    return it != ret->end() && it->is_string() ? it->get<std::string>() : std::string(fallback);
  };
  state.status = text("status", "none");
  state.error = text("error-desc", "");
  return state;
}

absl::StatusOr<std::string> ParseQueryStatus(absl::string_view reply) {
  absl::StatusOr<json> ret = ReturnOf(reply);
  if (!ret.ok()) return ret.status();
  if (!ret->is_object() || !ret->contains("status") || !(*ret)["status"].is_string()) {
    return absl::InternalError("query-status: no status in the reply");
  }
  return (*ret)["status"].get<std::string>();
}

}  // namespace podvisor::qmp
