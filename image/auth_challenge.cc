#include "image/auth_challenge.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace podvisor {
namespace {

size_t SkipSpaces(absl::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return i;
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(c) || absl::StrContains("!#$%&'*+-.^_`|~/:", c);
}

// Reads a token at s[i..]; returns its end.
size_t ReadToken(absl::string_view s, size_t i) {
  while (i < s.size() && IsTokenChar(s[i])) ++i;
  return i;
}

}  // namespace

std::vector<AuthChallenge> ParseWwwAuthenticate(absl::string_view h) {
  std::vector<AuthChallenge> out;
  size_t i = SkipSpaces(h, 0);
  while (i < h.size()) {
    if (h[i] == ',') {
      i = SkipSpaces(h, i + 1);
      continue;
    }
    size_t end = ReadToken(h, i);
    if (end == i) break;
    AuthChallenge c;
    c.scheme = absl::AsciiStrToLower(h.substr(i, end - i));
    i = SkipSpaces(h, end);
    // auth-params: name=value pairs until a token not followed by '=' starts a new challenge
    while (i < h.size()) {
      size_t name_end = ReadToken(h, i);
      if (name_end == i) break;
      size_t eq = SkipSpaces(h, name_end);
      if (eq >= h.size() || h[eq] != '=') break;  // next challenge
      std::string name = absl::AsciiStrToLower(h.substr(i, name_end - i));
      size_t v = SkipSpaces(h, eq + 1);
      std::string value;
      if (v < h.size() && h[v] == '"') {
        ++v;
        bool closed = false;
        while (v < h.size()) {
          if (h[v] == '\\' && v + 1 < h.size()) {
            value.push_back(h[v + 1]);
            v += 2;
          } else if (h[v] == '"') {
            closed = true;
            ++v;
            break;
          } else {
            value.push_back(h[v++]);
          }
        }
        if (!closed) {
          out.push_back(std::move(c));
          return out;
        }
      } else {
        size_t vend = ReadToken(h, v);
        value = std::string(h.substr(v, vend - v));
        v = vend;
      }
      c.params[name] = std::move(value);
      i = SkipSpaces(h, v);
      if (i < h.size() && h[i] == ',') i = SkipSpaces(h, i + 1);
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace podvisor
