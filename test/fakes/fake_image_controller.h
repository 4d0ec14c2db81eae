#pragma once

// An ImageController for unit tests: images are added by hand; layer images are any paths.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "image/image_service.h"

namespace podvisor::testing {

class FakeImageController : public ImageController {
 public:
  // Adds an image known by `name` whose layers are the given paths (lowest first).
  void AddImage(const std::string& name, ImageMetadata meta, std::vector<std::string> layers) {
    ImageRecord r;
    r.metadata = std::move(meta);
    r.status.repo_tags.push_back(name);
    r.status.repo_digests.push_back(absl::StrCat(name, "@sha256:feed"));
    images_[name] = r;
    layers_[r.metadata.id] = std::move(layers);
  }

  absl::StatusOr<ImageRecord> Pull(absl::string_view, const RegistryCredentials&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<ImageRecord> Get(absl::string_view image) const override {
    for (const auto& [name, r] : images_) {
      if (name == image || r.metadata.id == image) return r;
    }
    return absl::NotFoundError(absl::StrCat("image ", image, " not found"));
  }
  std::vector<ImageRecord> List(absl::string_view) const override {
    std::vector<ImageRecord> out;
    for (const auto& [name, r] : images_) out.push_back(r);
    return out;
  }
  absl::StatusOr<std::string> VerboseInfo(const ImageRecord&) const override { return "{}"; }
  absl::Status Remove(absl::string_view) override { return absl::OkStatus(); }
  void SetInUseCheck(std::function<bool(const std::string&)> in_use) override {
    in_use_ = std::move(in_use);
  }
  absl::Status GarbageCollect() override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<std::string>> LayerImages(absl::string_view id) const override {
    auto it = layers_.find(std::string(id));
    if (it == layers_.end()) return absl::NotFoundError("no layers");
    return it->second;
  }
  absl::StatusOr<ImageFsUsage> FsUsage() const override { return ImageFsUsage{}; }
  void SetRegistryConfig(const RegistryConfig& registry) override { registry_ = registry; }
  RegistryConfig registry_;

  std::function<bool(const std::string&)> in_use_;

 private:
  std::map<std::string, ImageRecord> images_;
  std::map<std::string, std::vector<std::string>> layers_;
};

}  // namespace podvisor::testing
