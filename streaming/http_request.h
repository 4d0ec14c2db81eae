#pragma once

// The HTTP request a streaming client sends before it upgrades (internal to streaming/): the
// parser's limits, the route (/exec|attach|portforward/<token>), the port-forward `port` query
// parameters and the protocol negotiation headers. Pure functions over a parsed request, so that
// the fuzzer drives exactly what the server runs.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/beast/http.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor::streaming {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;

// Limits of the request parser: the whole head, and a body (nobody sends one).
inline constexpr size_t kMaxRequestHeader = 64 * 1024;
inline constexpr size_t kMaxRequestBody = 64 * 1024;
// Ports a WebSocket port-forward can number: two one-byte channels per port.
inline constexpr size_t kMaxWebSocketPorts = 128;

// Where a request goes: "/exec/<token>" -> {"exec", "<token>", query}.
struct RequestTarget {
  std::string verb;   // exec, attach or portforward
  std::string token;
  std::string query;  // after '?', may be empty
};
// nullopt for any other path.
std::optional<RequestTarget> ParseTarget(absl::string_view target);

// Ports from `port` query parameters (repeated or comma-separated). INVALID_ARGUMENT for a port
// outside 1..65535 or more than `max_ports`.
absl::StatusOr<std::vector<int32_t>> QueryPorts(absl::string_view query, size_t max_ports);

// The values of every header called `name` (case-insensitive), split on commas, in order.
std::vector<std::string> HeaderList(const HttpRequest& request, absl::string_view name);

// The first client protocol the server supports (the client lists them by preference); empty
// when none.
std::string Negotiate(const std::vector<std::string>& client,
                      const std::vector<std::string>& server);

// `Connection: Upgrade` with `Upgrade: SPDY/3.1`.
bool IsSpdyUpgrade(const HttpRequest& request);

}  // namespace podvisor::streaming
