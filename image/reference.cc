#include "image/reference.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "image/digest.h"

namespace podvisor {
namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;
constexpr char kDefaultDomain[] = "docker.io";

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid image reference \"", text.substr(0, 300), "\": ", why));
}

bool IsAlnumLower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A path component: [a-z0-9]+ joined by '.', '_', '__' or any run of '-'.
bool ValidComponent(absl::string_view c) {
  if (c.empty() || !IsAlnumLower(c.front()) || !IsAlnumLower(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    if (IsAlnumLower(c[i])) continue;
    if (c[i] == '-') continue;
    if (c[i] == '.' || c[i] == '_') {
      // one '.', one '_' or "__", always followed by an alphanumeric
      size_t j = i + 1;
      if (c[i] == '_' && j < c.size() && c[j] == '_') ++j;
      if (j >= c.size() || !IsAlnumLower(c[j])) return false;
      i = j - 1;
      continue;
    }
    return false;
  }
  return true;
}

bool ValidDomain(absl::string_view d) {
  if (d.empty()) return false;
  if (d.front() == '[') {  // [ipv6]:port
    size_t close = d.find(']');
    if (close == absl::string_view::npos) return false;
    d = d.substr(close + 1);
    if (d.empty()) return true;
    if (d.front() != ':') return false;
    d.remove_prefix(1);
    if (d.empty()) return false;
    for (char c : d) {
      if (!absl::ascii_isdigit(c)) return false;
    }
    return true;
  }
  size_t colon = d.find(':');
  absl::string_view host = d.substr(0, colon);
  if (host.empty()) return false;
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (label.empty() || !absl::ascii_isalnum(label.front()) ||
        !absl::ascii_isalnum(label.back())) {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-') return false;
    }
  }
  if (colon != absl::string_view::npos) {
    absl::string_view port = d.substr(colon + 1);
    if (port.empty() || port.size() > 5) return false;
    for (char c : port) {
      if (!absl::ascii_isdigit(c)) return false;
    }
  }
  return true;
}

bool ValidTag(absl::string_view t) {
  if (t.empty() || t.size() > kMaxTagLength) return false;
  auto word = [](char c) { return absl::ascii_isalnum(c) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace

std::string ImageReference::String() const {
  if (!digest.empty()) return absl::StrCat(Name(), "@", digest);
  return absl::StrCat(Name(), ":", tag);
}

absl::StatusOr<ImageReference> ParseImageReference(absl::string_view text) {
  if (text.empty()) return Invalid(text, "empty");
  if (text.size() > 1024) return Invalid(text, "too long");
  ImageReference ref;
  absl::string_view rest = text;
  if (size_t at = rest.find('@'); at != absl::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    if (absl::Status s = ValidateDigest(ref.digest); !s.ok()) return Invalid(text, s.message());
    rest = rest.substr(0, at);
  }
  // A tag is after the last ':' that follows the last '/'.
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != absl::string_view::npos && (slash == absl::string_view::npos || colon > slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    if (!ValidTag(ref.tag)) return Invalid(text, absl::StrCat("invalid tag \"", ref.tag, "\""));
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return Invalid(text, "no repository name");
  std::vector<absl::string_view> parts = absl::StrSplit(rest, '/');
  absl::string_view first = parts.front();
  const bool has_domain =
      parts.size() > 1 && (absl::StrContains(first, '.') || absl::StrContains(first, ':') ||
                           first == "localhost" || absl::StartsWith(first, "["));
  if (has_domain) {
    if (!ValidDomain(first)) return Invalid(text, absl::StrCat("invalid registry \"", first, "\""));
    ref.domain = std::string(first);
    parts.erase(parts.begin());
  } else {
    ref.domain = kDefaultDomain;
  }
  if (ref.domain == "index.docker.io" || ref.domain == "registry-1.docker.io") {
    ref.domain = kDefaultDomain;
  }
  for (absl::string_view c : parts) {
    if (!ValidComponent(c)) {
      for (char ch : c) {
        if (absl::ascii_isupper(ch)) return Invalid(text, "repository name must be lowercase");
      }
      return Invalid(text, absl::StrCat("invalid repository component \"", c, "\""));
    }
  }
  ref.path = absl::StrJoin(parts, "/");
  if (ref.domain == kDefaultDomain && parts.size() == 1) ref.path = "library/" + ref.path;
  if (ref.Name().size() > kMaxNameLength) return Invalid(text, "repository name too long");
  if (!ref.digest.empty()) {
    ref.tag.clear();
  } else if (ref.tag.empty()) {
    ref.tag = "latest";
  }
  return ref;
}

bool IsLoopbackHost(absl::string_view host_port) {
  absl::string_view host = host_port;
  if (absl::StartsWith(host, "[")) {
    host = host.substr(1, host.find(']') - 1);
    return host == "::1";
  }
  host = host.substr(0, host.find(':'));
  if (host == "localhost") return true;
  if (!absl::StartsWith(host, "127.")) return false;
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4) return false;
  for (absl::string_view o : octets) {
    if (o.empty() || o.size() > 3) return false;
    for (char c : o) {
      if (!absl::ascii_isdigit(c)) return false;
    }
  }
  return true;
}

}  // namespace podvisor
