#include "test/support/metrics_scrape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace podvisor::testing {

std::optional<double> Scrape::Value(const std::string& name,
                                    const std::map<std::string, std::string>& labels) const {
  std::optional<double> found;
  for (const auto& [series, value] : samples) {
    const size_t brace = series.find('{');
    if (series.substr(0, brace) != name) continue;
    bool all = true;
    for (const auto& [k, v] : labels) {
      all = all && absl::StrContains(series, absl::StrCat(k, "=\"", v, "\""));
    }
    if (!all) continue;
    if (found) return std::nullopt;
    found = value;
  }
  return found;
}

Scrape ParseMetricsText(const std::string& body) {
  Scrape s;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line.substr(7), ' ');
      if (parts.size() == 2) s.types[parts[0]] = parts[1];
      continue;
    }
    if (line[0] == '#') continue;
    // name{labels} value [timestamp]; label values here never hold a '}'.
    const size_t close = line.find('}');
    const size_t space = line.find(' ', close == std::string::npos ? 0 : close);
    if (space == std::string::npos) continue;
    std::string value = line.substr(space + 1);
    value = value.substr(0, value.find(' '));
    double v = 0;
    if (value == "+Inf") {
      v = 1e300;
    } else if (!absl::SimpleAtod(value, &v)) {
      continue;
    }
    s.samples[line.substr(0, space)] = v;
  }
  return s;
}

Scrape ScrapeMetrics(const std::string& host_port, const std::string& path) {
  Scrape empty;
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return empty;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(host_port.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr) != 1) return empty;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return empty;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return empty;
  }
  const std::string req =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host_port, "\r\nConnection: close\r\n\r\n");
  (void)!::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string answer;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const size_t end = answer.find("\r\n\r\n");
  if (end == std::string::npos || !absl::StartsWith(answer, "HTTP/1.")) return empty;
  Scrape s = ParseMetricsText(answer.substr(end + 4));
  std::vector<std::string> status = absl::StrSplit(answer.substr(0, answer.find("\r\n")), ' ');
  if (status.size() >= 2) (void)absl::SimpleAtoi(status[1], &s.http_status);
  for (absl::string_view h : absl::StrSplit(answer.substr(0, end), "\r\n")) {
    if (absl::StartsWithIgnoreCase(h, "content-type:")) {
      s.content_type = std::string(absl::StripAsciiWhitespace(h.substr(13)));
    }
  }
  return s;
}

}  // namespace podvisor::testing
