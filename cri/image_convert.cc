#include "cri/image_convert.h"

namespace podvisor::cri {

void ToProto(const ImageRecord& image, runtime::v1::Image* out) {
  out->set_id(image.metadata.id);
  for (const std::string& t : image.status.repo_tags) out->add_repo_tags(t);
  for (const std::string& d : image.status.repo_digests) out->add_repo_digests(d);
  out->set_size(static_cast<uint64_t>(image.metadata.size));
  if (image.metadata.uid >= 0) out->mutable_uid()->set_value(image.metadata.uid);
  out->set_username(image.metadata.username);
  out->set_pinned(image.status.pinned);
}

RegistryCredentials FromProto(const runtime::v1::AuthConfig& auth) {
  return RegistryCredentials{auth.username(),       auth.password(),       auth.auth(),
                             auth.identity_token(), auth.registry_token(), auth.server_address()};
}

void ToProto(const ImageFsUsage& usage, runtime::v1::FilesystemUsage* out) {
  out->set_timestamp(usage.timestamp_ns);
  out->mutable_fs_id()->set_mountpoint(usage.mountpoint);
  out->mutable_used_bytes()->set_value(usage.used_bytes);
  out->mutable_inodes_used()->set_value(usage.inodes_used);
}

}  // namespace podvisor::cri
