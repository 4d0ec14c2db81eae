#include "image/manifest.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "image/digest.h"
#include "nlohmann/json.hpp"

namespace podvisor {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed manifest: ", what));
}

bool IsLayerType(absl::string_view t) {
  return t == "application/vnd.oci.image.layer.v1.tar" ||
         t == "application/vnd.oci.image.layer.v1.tar+gzip" ||
         t == "application/vnd.oci.image.layer.v1.tar+zstd" ||
         t == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
         t == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
         t == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" ||
         t == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
         t == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
         t == "application/vnd.docker.image.rootfs.diff.tar";
}

std::string GetString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

absl::StatusOr<Descriptor> ParseDescriptor(const json& j, absl::string_view where) {
  if (!j.is_object()) return Bad(absl::StrCat(where, " is not an object"));
  Descriptor d;
  d.media_type = GetString(j, "mediaType");
  d.digest = GetString(j, "digest");
  if (absl::Status s = ValidateDigest(d.digest); !s.ok()) {
    return Bad(absl::StrCat(where, ": ", s.message()));
  }
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    return Bad(absl::StrCat(where, ": size missing or negative"));
  }
  d.size = size->get<int64_t>();
  auto platform = j.find("platform");
  if (platform != j.end() && platform->is_object()) {
    d.platform = Platform{GetString(*platform, "os"), GetString(*platform, "architecture"),
                          GetString(*platform, "variant")};
  }
  return d;
}

std::vector<std::string> StringList(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const json& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

std::vector<std::string> ObjectKeys(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_object()) return out;
  for (auto& [k, v] : it->items()) out.push_back(k);
  return out;
}

}  // namespace

std::string ManifestAcceptHeader() {
  return absl::StrCat(kMediaOciIndex, ", ", kMediaDockerList, ", ", kMediaOciManifest, ", ",
                      kMediaDockerManifest);
}

absl::StatusOr<ManifestDocument> ParseManifest(absl::string_view body,
                                               absl::string_view content_type) {
  if (static_cast<int64_t>(body.size()) > kMaxManifestBytes) return Bad("larger than 4 MiB");
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad("not a JSON object");
  auto version = j.find("schemaVersion");
  if (version != j.end() && version->is_number_integer() && version->get<int64_t>() == 1) {
    return absl::UnimplementedError(
        "Docker schema 1 manifests are not supported (push the image again with a current tool)");
  }
  if (version == j.end() || !version->is_number_integer() || version->get<int64_t>() != 2) {
    return Bad("schemaVersion is not 2");
  }
  ManifestDocument doc;
  doc.media_type = GetString(j, "mediaType");
  if (doc.media_type.empty()) {
    doc.media_type = std::string(content_type.substr(0, content_type.find(';')));
    if (doc.media_type.empty() || doc.media_type == "application/json") {
      // OCI documents may omit mediaType: tell them apart by their fields.
      doc.media_type = j.contains("manifests") ? kMediaOciIndex : kMediaOciManifest;
    }
  }
  if (doc.media_type == kMediaOciIndex || doc.media_type == kMediaDockerList) {
    doc.is_index = true;
    auto m = j.find("manifests");
    if (m == j.end() || !m->is_array()) return Bad("index has no manifests array");
    for (size_t i = 0; i < m->size(); ++i) {
      auto d = ParseDescriptor((*m)[i], absl::StrCat("manifests[", i, "]"));
      if (!d.ok()) return d.status();
      doc.manifests.push_back(std::move(*d));
    }
    return doc;
  }
  if (doc.media_type != kMediaOciManifest && doc.media_type != kMediaDockerManifest) {
    return absl::UnimplementedError(
        absl::StrCat("unsupported manifest media type \"", doc.media_type.substr(0, 100), "\""));
  }
  auto config = j.find("config");
  if (config == j.end()) return Bad("manifest has no config");
  auto c = ParseDescriptor(*config, "config");
  if (!c.ok()) return c.status();
  doc.config = std::move(*c);
  if (doc.config.size > kMaxConfigBytes) return Bad("config larger than 8 MiB");
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return Bad("manifest has no layers array");
  for (size_t i = 0; i < layers->size(); ++i) {
    auto d = ParseDescriptor((*layers)[i], absl::StrCat("layers[", i, "]"));
    if (!d.ok()) return d.status();
    if (!IsLayerType(d->media_type)) {
      return absl::UnimplementedError(absl::StrCat("layers[", i, "]: unsupported media type \"",
                                                   d->media_type.substr(0, 100), "\""));
    }
    doc.layers.push_back(std::move(*d));
  }
  return doc;
}

absl::StatusOr<Descriptor> SelectPlatform(const ManifestDocument& index,
                                          absl::string_view architecture) {
  std::vector<std::string> offered;
  for (const Descriptor& d : index.manifests) {
    if (!d.platform) continue;
    if (d.platform->os == "linux" && d.platform->architecture == architecture) {
      if (d.media_type == kMediaOciIndex || d.media_type == kMediaDockerList) continue;
      return d;
    }
    offered.push_back(absl::StrCat(d.platform->os, "/", d.platform->architecture,
                                   d.platform->variant.empty() ? "" : "/", d.platform->variant));
  }
  return absl::NotFoundError(
      absl::StrCat("no manifest for linux/", architecture, " in the image index (offered: ",
                   offered.empty() ? "none" : absl::StrJoin(offered, ", "), ")"));
}

absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("malformed image config: not a JSON object");
  }
  ImageConfig c;
  c.architecture = GetString(j, "architecture");
  c.os = GetString(j, "os");
  c.created = GetString(j, "created");
  auto cfg = j.find("config");
  if (cfg != j.end() && cfg->is_object()) {
    c.user = GetString(*cfg, "User");
    c.env = StringList(*cfg, "Env");
    c.entrypoint = StringList(*cfg, "Entrypoint");
    c.cmd = StringList(*cfg, "Cmd");
    c.working_dir = GetString(*cfg, "WorkingDir");
    c.stop_signal = GetString(*cfg, "StopSignal");
    c.exposed_ports = ObjectKeys(*cfg, "ExposedPorts");
    c.volumes = ObjectKeys(*cfg, "Volumes");
    auto labels = cfg->find("Labels");
    if (labels != cfg->end() && labels->is_object()) {
      for (auto& [k, v] : labels->items()) {
        if (v.is_string()) c.labels[k] = v.get<std::string>();
      }
    }
  }
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object()) {
    return absl::InvalidArgumentError("malformed image config: no rootfs");
  }
  if (GetString(*rootfs, "type") != "layers") {
    return absl::InvalidArgumentError("malformed image config: rootfs.type is not \"layers\"");
  }
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) {
    return absl::InvalidArgumentError("malformed image config: no rootfs.diff_ids");
  }
  for (const json& id : *ids) {
    std::string s = id.is_string() ? id.get<std::string>() : "";
    if (absl::Status st = ValidateDigest(s); !st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed image config: rootfs.diff_ids: ", st.message()));
    }
    c.diff_ids.push_back(std::move(s));
  }
  return c;
}

}  // namespace podvisor
