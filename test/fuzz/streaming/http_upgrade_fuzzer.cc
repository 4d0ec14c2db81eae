// Feeds arbitrary bytes to what reads a client's request before the upgrade: the HTTP parser with
// the server's limits, then the route, the port query, the header lists and the protocol checks
// the server runs on a parsed request. Checks: no crash, no hang, ports within 1..65535 and
// within the bound.
//
// Build: CC=clang CXX=clang++ cmake -DPODVISOR_BUILD_FUZZERS=ON ...; ninja http_upgrade_fuzzer.
// Run: fuzz/http_upgrade_fuzzer -max_total_time=60 corpus/
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "streaming/http_request.h"

namespace http = boost::beast::http;
namespace streaming = podvisor::streaming;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(streaming::kMaxRequestHeader);
  parser.body_limit(streaming::kMaxRequestBody);
  boost::beast::error_code ec;
  // As a socket delivers it: in pieces.
  size_t at = 0;
  while (at < size && !parser.is_done()) {
    const size_t piece = std::min<size_t>(size - at, 1 + data[at] % 200);
    const size_t used = parser.put(boost::asio::buffer(data + at, piece), ec);
    if (ec == http::error::need_more) {
      ec = {};
      if (used == 0 && piece == size - at) break;
      at += used == 0 ? piece : used;
      continue;
    }
    if (ec) return 0;
    at += used;
    if (used == 0) break;
  }
  if (!parser.is_header_done()) return 0;
  const streaming::HttpRequest& request = parser.get();
  std::optional<streaming::RequestTarget> target = streaming::ParseTarget(
      absl::string_view(request.target().data(), request.target().size()));
  if (target.has_value()) {
    absl::StatusOr<std::vector<int32_t>> ports =
        streaming::QueryPorts(target->query, streaming::kMaxWebSocketPorts);
    if (ports.ok()) {
      if (ports->size() > streaming::kMaxWebSocketPorts) std::abort();
      for (int32_t p : *ports) {
        if (p < 1 || p > 65535) std::abort();
      }
    }
  }
  std::vector<std::string> versions = streaming::HeaderList(request, "X-Stream-Protocol-Version");
  for (const std::string& v : versions) {
    if (v.empty()) std::abort();
  }
  (void)streaming::Negotiate(versions, {"v4.channel.k8s.io", "portforward.k8s.io"});
  (void)streaming::IsSpdyUpgrade(request);
  (void)boost::beast::websocket::is_upgrade(request);
  return 0;
}
