#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace podvisor {

// Content digests as OCI writes them: "sha256:<64 lowercase hex>". Only sha256 is supported,
// like every registry in use.
constexpr absl::string_view kSha256Prefix = "sha256:";

// OK when `digest` is "sha256:" followed by 64 lowercase hex digits; INVALID_ARGUMENT otherwise.
absl::Status ValidateDigest(absl::string_view digest);
bool IsHex64(absl::string_view s);

// The hex part of a valid digest.
std::string DigestHex(absl::string_view digest);

// Incremental SHA-256. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // "sha256:<hex>"; the hasher must not be used afterwards.
  std::string Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string Sha256Digest(absl::string_view data);

}  // namespace podvisor
