#pragma once

// Scrapes a Prometheus text-format endpoint over plain HTTP and parses what it answered.

#include <map>
#include <optional>
#include <string>

namespace podvisor::testing {

struct Scrape {
  int http_status = 0;
  std::string content_type;
  std::map<std::string, std::string> types;  // family name -> counter | gauge | histogram | ...
  // Every sample by its series as written: name{label="v",...} (labels in the order served).
  std::map<std::string, double> samples;

  // The value of the one sample of `name` whose labels include every `label="value"` pair of
  // `labels` (e.g. {"method": "Status"}); nullopt when none or several match.
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const;
};

// GET http://<host:port><path>. An empty result (http_status 0) when nothing answered.
Scrape ScrapeMetrics(const std::string& host_port, const std::string& path = "/metrics");

// The same from a text-format body (for the parser's own use).
Scrape ParseMetricsText(const std::string& body);

}  // namespace podvisor::testing
