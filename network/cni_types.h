#pragma once

// The CNI specification's data types (configuration lists, results, errors) and their parsers.
// https://github.com/containernetworking/cni/blob/main/SPEC.md — versions 0.1.0 to 1.1.0.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace podvisor::network {

// One plugin entry of a configuration list.
struct CniPluginConf {
  std::string type;                          // the plugin binary's name
  std::map<std::string, bool> capabilities;  // e.g. {"portMappings": true}
  nlohmann::json raw;                        // the whole object, passed to the plugin
};

// A network configuration list (a .conflist, or a single-plugin .conf wrapped in one).
struct CniConfList {
  std::string name;
  std::string cni_version;
  bool disable_check = false;
  std::vector<CniPluginConf> plugins;
  std::string source;  // the file it came from
  nlohmann::json raw;  // the list as loaded (kept in the per-pod cache for DEL)
};

// Versions of the spec this runtime speaks.
bool IsSupportedCniVersion(absl::string_view version);
// "0.4.0" < "1.0.0"; unparsable parts count as 0.
int CompareCniVersions(absl::string_view a, absl::string_view b);

// Parses a .conflist, or a .conf holding one plugin (`is_single` selects which). Errors are
// INVALID_ARGUMENT naming `source` and the offending key.
absl::StatusOr<CniConfList> ParseCniConfList(absl::string_view text, const std::string& source,
                                             bool is_single = false);

// The network to use from `conf_dir`: the first file in lexical order ending in .conflist, .conf
// or .json that parses. NOT_FOUND (saying which files were tried and why they were rejected)
// when there is none.
absl::StatusOr<CniConfList> LoadCniNetwork(const std::string& conf_dir);

struct CniInterface {
  std::string name;
  std::string mac;
  std::string sandbox;  // netns path for interfaces inside the container; empty on the host
  int mtu = 0;
};

struct CniIp {
  std::string address;           // CIDR, e.g. "10.1.2.3/24"
  std::string gateway;           // may be empty
  std::optional<int> interface;  // index into `interfaces`
  int version = 4;               // derived from the address when the result omits it
};

struct CniRoute {
  std::string dst;  // CIDR
  std::string gw;   // may be empty
};

struct CniDns {
  std::vector<std::string> nameservers;
  std::string domain;
  std::vector<std::string> search;
  std::vector<std::string> options;
};

// A plugin's ADD result, normalised to the 1.0.0 shape whatever version it came in.
struct CniResult {
  std::string cni_version;
  std::vector<CniInterface> interfaces;
  std::vector<CniIp> ips;
  std::vector<CniRoute> routes;
  CniDns dns;
};

// Parses a result of any supported version (0.1.0/0.2.0 "ip4"/"ip6" style, 0.3.x/0.4.0 with
// "version" in each IP, 1.x). INVALID_ARGUMENT when it is not a result.
absl::StatusOr<CniResult> ParseCniResult(absl::string_view text);

// A plugin's error output: {"cniVersion", "code", "msg", "details"}.
struct CniError {
  int code = 0;
  std::string msg;
  std::string details;
};

// Well-known error codes of the specification.
inline constexpr int kCniErrIncompatibleVersion = 1;
inline constexpr int kCniErrUnsupportedField = 2;
inline constexpr int kCniErrUnknownContainer = 3;
inline constexpr int kCniErrInvalidEnv = 4;
inline constexpr int kCniErrIo = 5;
inline constexpr int kCniErrDecode = 6;
inline constexpr int kCniErrInvalidConfig = 7;
inline constexpr int kCniErrTryAgain = 11;

// Parses an error object; INVALID_ARGUMENT if `text` is not one.
absl::StatusOr<CniError> ParseCniError(absl::string_view text);

// The status for a plugin failure: code mapped from the CNI code (11 -> UNAVAILABLE,
// 3 -> NOT_FOUND, 1/2/4/6/7 -> FAILED_PRECONDITION, else INTERNAL) and a message with
// `context`, the CNI code, msg and details.
absl::Status CniErrorToStatus(const CniError& error, absl::string_view context);

}  // namespace podvisor::network
