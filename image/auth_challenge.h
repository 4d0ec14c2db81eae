#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace podvisor {

// One challenge of a WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."`.
struct AuthChallenge {
  std::string scheme;                         // lower case: "basic", "bearer"
  std::map<std::string, std::string> params;  // keys lower case
};

// Parses a WWW-Authenticate header value (RFC 7235: one or more challenges, quoted strings with
// backslash escapes). Malformed input yields the challenges parsed before the fault.
std::vector<AuthChallenge> ParseWwwAuthenticate(absl::string_view header);

}  // namespace podvisor
