#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor {

// Media types of the OCI image spec and of Docker's schema 2.
inline constexpr char kMediaOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kMediaOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kMediaOciConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kMediaDockerList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kMediaDockerManifest[] =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kMediaDockerConfig[] = "application/vnd.docker.container.image.v1+json";

// The Accept header a manifest request sends.
std::string ManifestAcceptHeader();

// Largest manifest or index we read (registries cap them at 4 MiB as well).
inline constexpr int64_t kMaxManifestBytes = 4 << 20;
// Largest image config we read.
inline constexpr int64_t kMaxConfigBytes = 8 << 20;

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
};

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::optional<Platform> platform;
};

// A manifest or an index: exactly one of the two halves is filled.
struct ManifestDocument {
  std::string media_type;
  bool is_index = false;
  std::vector<Descriptor> manifests;  // index
  Descriptor config;                  // manifest
  std::vector<Descriptor> layers;     // manifest
};

// Parses a manifest or index. `content_type` (the HTTP header) is used when the document has no
// mediaType field. Schema 1 and unknown types are INVALID_ARGUMENT / UNIMPLEMENTED with a
// sentence; every digest, size and layer media type is checked.
absl::StatusOr<ManifestDocument> ParseManifest(absl::string_view body,
                                               absl::string_view content_type);

// The entry of an index for linux/`architecture` (variant ignored unless several match);
// NOT_FOUND listing the platforms on offer when none does.
absl::StatusOr<Descriptor> SelectPlatform(const ManifestDocument& index,
                                          absl::string_view architecture = "amd64");

// What an image config says about running it (the OCI image config's `config` object) and its
// layers.
struct ImageConfig {
  std::string user;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::vector<std::string> exposed_ports;
  std::vector<std::string> volumes;
  std::string stop_signal;
  std::string architecture;
  std::string os;
  std::string created;
  std::vector<std::string> diff_ids;  // rootfs.diff_ids, lowest layer first
};

absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view body);

}  // namespace podvisor
