#pragma once

// The image service: pulls OCI images from registries into a content store, unpacks their layers
// into read-only erofs images, and keeps image records. The one header the rest of podvisor
// includes from image/.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config.h"
#include "image/layer_unpacker.h"
#include "image/manifest.h"
#include "image/registry_client.h"
#include "nlohmann/json.hpp"
#include "store/object_store.h"

namespace podvisor {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ImageConfig, user, env, entrypoint, cmd,
                                                working_dir, labels, exposed_ports, volumes,
                                                stop_signal, architecture, os, created, diff_ids)

struct ImageLayer {
  std::string digest;  // of the blob as stored (compressed)
  std::string media_type;
  int64_t size = 0;
  std::string diff_id;  // of the uncompressed tar; names the layer's erofs image
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ImageLayer, digest, media_type, size, diff_id)

// What an image is; fixed when it is first pulled. `id` is the config digest.
struct ImageMetadata {
  std::string id;
  std::string name;  // unused (images are found by tag and digest instead)
  std::string manifest_digest;
  ImageConfig config;
  std::vector<ImageLayer> layers;  // lowest first
  int64_t size = 0;                // manifest + config + compressed layers, as containerd counts it
  int64_t uid = -1;                // from the config's User when numeric; -1 otherwise
  std::string username;            // from the config's User when a name
  int64_t pulled_at_ns = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ImageMetadata, id, name, manifest_digest, config,
                                                layers, size, uid, username, pulled_at_ns)

// The names an image goes by and the blobs it holds.
struct ImageNames {
  std::vector<std::string> repo_tags;     // docker.io/library/busybox:latest
  std::vector<std::string> repo_digests;  // docker.io/library/busybox@sha256:...
  bool pinned = false;
  std::vector<std::string> blobs;  // every blob digest a pull of it stored (indexes, manifests...)
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ImageNames, repo_tags, repo_digests, pinned, blobs)

using ImageRecord = StoredObject<ImageMetadata, ImageNames>;

// The digested reference (repo@sha256:...) a container created from `requested` (a tag, digest
// or id reference to `image`) reports as its image_ref: the repo digest of the repository it
// was named by, else the image's first repo digest, else its id. CRI v1.36: image_id (the
// `id` of the image, also PullImageResponse.image_ref) identifies the image; image_ref keeps
// which reference it came from.
std::string DigestedReference(const ImageRecord& image, absl::string_view requested);
using ImageStore = ObjectStore<ImageMetadata, ImageNames>;

// Usage of the filesystem that holds the image store.
struct ImageFsUsage {
  int64_t timestamp_ns = 0;
  std::string mountpoint;
  uint64_t used_bytes = 0;
  uint64_t inodes_used = 0;
};

// Owns images: pull, lookup by id / tag / digest, removal with garbage collection of blobs and
// layer images, and the layer images containers are built from. Thread-safe: pulls run
// concurrently (the same blob or layer is fetched and unpacked once), and GC never removes what a
// running pull uses.
class ImageController {
 public:
  struct Options {
    std::string root_dir;  // <config root_dir>/images
    RegistryConfig registry;
    UnpackLimits limits;
    std::string architecture = "amd64";
  };

  // Opens (creating) the store under options.root_dir, loads image records from `records`
  // (kind "image"), removes leftovers of interrupted pulls and unreferenced blobs.
  static absl::StatusOr<std::unique_ptr<ImageController>> Create(Options options,
                                                                 RecordStore* records);
  virtual ~ImageController() = default;

  // Pulls `reference` (normalised like kubelet: busybox -> docker.io/library/busybox:latest) and
  // returns its record. Nothing is fetched that is already stored.
  virtual absl::StatusOr<ImageRecord> Pull(absl::string_view reference,
                                           const RegistryCredentials& credentials) = 0;
  // The same, abandoned (CANCELLED, its download slots freed) once `cancelled` turns true: the
  // caller's client hung up or its deadline passed.
  virtual absl::StatusOr<ImageRecord> PullCancellable(absl::string_view reference,
                                                      const RegistryCredentials& credentials,
                                                      const CancelCheck& cancelled) {
    (void)cancelled;
    return Pull(reference, credentials);
  }

  // By id (sha256:<hex>, <hex>, or a unique hex prefix), tag or digest reference. NOT_FOUND.
  virtual absl::StatusOr<ImageRecord> Get(absl::string_view image) const = 0;
  // All images, or those `filter` (as Get understands it) names.
  virtual std::vector<ImageRecord> List(absl::string_view filter) const = 0;
  // The verbose description (manifest, config, layers) ImageStatus returns as JSON.
  virtual absl::StatusOr<std::string> VerboseInfo(const ImageRecord& image) const = 0;

  // By tag: removes that tag; the image goes when it has no tag left. By id or digest: removes
  // the image. An image a container uses (see SetInUseCheck) loses its names but stays until
  // the next GarbageCollect after the container is gone. Unknown images are OK (idempotent).
  virtual absl::Status Remove(absl::string_view image) = 0;

  // Containers tell the controller which image ids are in use (called during GC).
  virtual void SetInUseCheck(std::function<bool(const std::string& image_id)> in_use) = 0;
  // Deletes nameless images no container uses, and blobs and layer images no image references.
  virtual absl::Status GarbageCollect() = 0;

  // Paths of the read-only erofs layer images of an image, lowest first: what a container's
  // root filesystem is assembled from (overlay of these, plus a writable upper).
  virtual absl::StatusOr<std::vector<std::string>> LayerImages(
      absl::string_view image_id) const = 0;

  virtual absl::StatusOr<ImageFsUsage> FsUsage() const = 0;

  // Registry hosts (mirrors, TLS, plain HTTP) for pulls that start from now on; pulls under way
  // finish with the settings they started with (a config reload). The download concurrency and
  // pinned images stay as they were at Create.
  virtual void SetRegistryConfig(const RegistryConfig& registry) = 0;
};

}  // namespace podvisor
