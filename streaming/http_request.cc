#include "streaming/http_request.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace podvisor::streaming {

std::optional<RequestTarget> ParseTarget(absl::string_view target) {
  absl::string_view query;
  if (size_t q = target.find('?'); q != absl::string_view::npos) {
    query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  std::vector<absl::string_view> parts = absl::StrSplit(target, '/');
  // "/exec/<token>" splits into "", "exec", "<token>".
  if (parts.size() != 3 || !parts[0].empty() ||
      (parts[1] != "exec" && parts[1] != "attach" && parts[1] != "portforward")) {
    return std::nullopt;
  }
  return RequestTarget{std::string(parts[1]), std::string(parts[2]), std::string(query)};
}

absl::StatusOr<std::vector<int32_t>> QueryPorts(absl::string_view query, size_t max_ports) {
  std::vector<int32_t> ports;
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first != "port") continue;
    for (absl::string_view p : absl::StrSplit(kv.second, ',', absl::SkipEmpty())) {
      int32_t port = 0;
      if (!absl::SimpleAtoi(p, &port) || port <= 0 || port > 65535) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid port \"", absl::CEscape(p.substr(0, 16)), "\""));
      }
      if (ports.size() == max_ports) {
        return absl::InvalidArgumentError(
            absl::StrCat("more than ", max_ports, " ports in one port-forward request"));
      }
      ports.push_back(port);
    }
  }
  return ports;
}

std::vector<std::string> HeaderList(const HttpRequest& request, absl::string_view name) {
  std::vector<std::string> values;
  for (const auto& field : request) {
    if (!absl::EqualsIgnoreCase(
            absl::string_view(field.name_string().data(), field.name_string().size()), name)) {
      continue;
    }
    for (absl::string_view part :
         absl::StrSplit(absl::string_view(field.value().data(), field.value().size()), ',')) {
      part = absl::StripAsciiWhitespace(part);
      if (!part.empty()) values.emplace_back(part);
    }
  }
  return values;
}

std::string Negotiate(const std::vector<std::string>& client,
                      const std::vector<std::string>& server) {
  for (const std::string& c : client) {
    for (const std::string& s : server) {
      if (c == s) return c;
    }
  }
  return "";
}

bool IsSpdyUpgrade(const HttpRequest& request) {
  bool connection_upgrade = false;
  for (const std::string& v : HeaderList(request, "Connection")) {
    if (absl::EqualsIgnoreCase(v, "upgrade")) connection_upgrade = true;
  }
  if (!connection_upgrade) return false;
  for (const std::string& v : HeaderList(request, "Upgrade")) {
    if (absl::EqualsIgnoreCase(v, "SPDY/3.1")) return true;
  }
  return false;
}

}  // namespace podvisor::streaming
