// Feeds registry-controlled text to the parsers: manifests and indexes, image configs,
// WWW-Authenticate headers and image references.

#include <cstddef>
#include <cstdint>
#include <string>

#include "image/auth_challenge.h"
#include "image/manifest.h"
#include "image/reference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  auto doc = podvisor::ParseManifest(input, "application/vnd.oci.image.manifest.v1+json");
  if (doc.ok() && doc->is_index) podvisor::SelectPlatform(*doc, "amd64").IgnoreError();
  podvisor::ParseManifest(input, "").IgnoreError();
  podvisor::ParseImageConfig(input).IgnoreError();
  podvisor::ParseWwwAuthenticate(input);
  auto ref = podvisor::ParseImageReference(input);
  if (ref.ok()) {
    // A parsed reference must parse again to itself.
    auto again = podvisor::ParseImageReference(ref->String());
    if (!again.ok() || !(*again == *ref)) __builtin_trap();
  }
  podvisor::IsLoopbackHost(input);
  return 0;
}
