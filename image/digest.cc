#include "image/digest.h"

#include <openssl/evp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace podvisor {

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::Update(const void* data, size_t size) {
  if (size > 0) EVP_DigestUpdate(state_->ctx, data, size);
}

std::string Sha256::Finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(state_->ctx, md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kSha256Prefix);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

std::string Sha256Digest(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

bool IsHex64(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::Status ValidateDigest(absl::string_view digest) {
  if (!absl::StartsWith(digest, kSha256Prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest.substr(0, 80), "\": only sha256 digests are supported"));
  }
  if (!IsHex64(digest.substr(kSha256Prefix.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest.substr(0, 80), "\" is not sha256:<64 lowercase hex>"));
  }
  return absl::OkStatus();
}

std::string DigestHex(absl::string_view digest) {
  return std::string(digest.substr(kSha256Prefix.size()));
}

}  // namespace podvisor
