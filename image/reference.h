#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor {

// A normalised image reference, as kubelet and containerd understand one:
//   busybox                  -> docker.io/library/busybox:latest
//   quay.io/a/b@sha256:...   -> digest reference
//   name:tag@sha256:...      -> the digest wins; the tag is dropped (as containerd does)
struct ImageReference {
  std::string domain;  // docker.io, registry.k8s.io, 127.0.0.1:5000
  std::string path;    // library/busybox
  std::string tag;     // empty when `digest` is set
  std::string digest;  // sha256:<hex> or empty

  // domain/path
  std::string Name() const { return domain + "/" + path; }
  // The tag or digest that manifests are fetched by.
  const std::string& Object() const { return digest.empty() ? tag : digest; }
  // name:tag or name@digest
  std::string String() const;
  bool operator==(const ImageReference&) const = default;
};

// Parses and normalises `text`. INVALID_ARGUMENT naming the problem for anything that is not a
// valid reference (uppercase repository, bad tag, non-sha256 digest, empty, too long).
absl::StatusOr<ImageReference> ParseImageReference(absl::string_view text);

// True for hosts on loopback: localhost, 127.0.0.0/8, ::1 (with or without a port).
bool IsLoopbackHost(absl::string_view host_port);

}  // namespace podvisor
