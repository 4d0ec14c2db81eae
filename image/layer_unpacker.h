#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor {

// Where compressed layer bytes come from: fills `buf` with up to `size` bytes and returns how
// many (0 at the end of the stream).
using ByteReader = std::function<absl::StatusOr<size_t>(char* buf, size_t size)>;

// Bounds that a layer must stay within; a layer over any of them is rejected.
struct UnpackLimits {
  int64_t max_entry_bytes = int64_t{16} << 30;  // one file
  int64_t max_total_bytes = int64_t{64} << 30;  // the uncompressed tar stream
  int64_t max_entries = 4 << 20;
  size_t max_path_bytes = 4096;
};

struct UnpackResult {
  std::string diff_id;    // sha256 of the uncompressed tar stream
  int64_t tar_bytes = 0;  // size of the uncompressed tar stream
  int64_t entries = 0;
};

// Extracts one OCI layer (a tar stream, plain, gzip or zstd: told apart by its magic bytes) into
// the empty directory `dest_dir`, as an overlayfs lower layer: OCI whiteouts `.wh.<name>` become
// overlay whiteouts (0/0 character devices) and `.wh..wh..opq` marks its directory opaque
// (trusted.overlay.opaque=y). Ownership, modes, times and user./security.capability xattrs are
// kept.
//
// Hostile archives are rejected with INVALID_ARGUMENT naming the entry, and nothing is written
// outside `dest_dir`: absolute paths, `..` components, paths through symlinks (every component
// is opened with O_NOFOLLOW), hard links to anything outside or to directories, device nodes and
// entries over the limits. On error `dest_dir` holds a partial tree that the caller discards.
absl::StatusOr<UnpackResult> UnpackLayer(const ByteReader& in, const std::string& dest_dir,
                                         const UnpackLimits& limits = {});

// UnpackLayer reading from a file.
absl::StatusOr<UnpackResult> UnpackLayerFile(const std::string& blob_path,
                                             const std::string& dest_dir,
                                             const UnpackLimits& limits = {});

// Makes a read-only erofs image of `dir` at `image_path` with mkfs.erofs (uncompressed; see
// docs/images.md for why).
absl::Status BuildErofsImage(const std::string& dir, const std::string& image_path);

// Runs argv[0] (searched in PATH) with stdout and stderr captured (the first 64 KiB) into
// `output`; OK when it exits with 0, else INTERNAL with the output's tail.
absl::Status RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr);

}  // namespace podvisor
