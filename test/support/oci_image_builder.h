#pragma once

// Builds OCI images for image tests: tar layers (including hostile ones), gzip/zstd compression,
// an OCI layout on disk, and pushes to a registry with skopeo.

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace podvisor::testing {

struct TarEntry {
  enum Type { kFile, kDir, kSymlink, kHardlink, kCharDev, kFifo };
  std::string path;
  std::string data;  // file contents
  std::string link;  // symlink or hard link target
  Type type = kFile;
  int mode = 0644;
  int uid = 0;
  int gid = 0;
};

TarEntry File(std::string path, std::string data, int mode = 0644);
TarEntry Dir(std::string path, int mode = 0755);
TarEntry Symlink(std::string path, std::string target);
TarEntry Hardlink(std::string path, std::string target);

// A tar stream (pax format) of `entries`, in order, with the names exactly as given.
std::string MakeTar(const std::vector<TarEntry>& entries);

enum class Compression { kNone, kGzip, kZstd };
std::string Compress(const std::string& data, Compression compression);
std::string LayerMediaType(Compression compression);
std::string Sha256Hex(const std::string& data);  // "sha256:<hex>"

// An OCI image layout directory being written.
class OciLayout {
 public:
  explicit OciLayout(std::string dir);
  const std::string& dir() const { return dir_; }

  std::string AddBlob(const std::string& data);  // returns the digest

  struct Layer {
    std::string blob;
    std::string media_type;
    std::string diff_id;
  };
  static Layer MakeLayer(const std::vector<TarEntry>& entries, Compression compression);

  // Writes config and manifest blobs; returns the manifest's descriptor (with platform).
  nlohmann::json AddImage(const std::vector<Layer>& layers, const std::string& arch = "amd64",
                          const std::string& user = "");
  // Writes an index blob of `manifests`; returns its descriptor.
  nlohmann::json AddIndex(const std::vector<nlohmann::json>& manifests);
  // Names a descriptor in index.json (the tag skopeo reads as oci:<dir>:<tag>).
  void Tag(const std::string& tag, nlohmann::json descriptor);

 private:
  void WriteIndex();
  std::string dir_;
  std::vector<nlohmann::json> tagged_;
};

// skopeo copy oci:<layout>:<tag> docker://<dest> (all platforms); returns "" on success, else
// skopeo's output. `extra` are more skopeo flags (--dest-creds ..., --dest-cert-dir ...).
std::string Push(const OciLayout& layout, const std::string& tag, const std::string& dest,
                 const std::vector<std::string>& extra = {});

// Runs a command; returns its exit code, output (stdout+stderr) in `output`.
int Run(const std::vector<std::string>& argv, std::string* output = nullptr);

}  // namespace podvisor::testing
