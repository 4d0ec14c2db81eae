#pragma once

// Conversions between runtime.v1 image messages and image/ domain types.

#include "image/image_service.h"
#include "runtime/v1/api.pb.h"

namespace podvisor::cri {

void ToProto(const ImageRecord& image, runtime::v1::Image* out);
RegistryCredentials FromProto(const runtime::v1::AuthConfig& auth);
void ToProto(const ImageFsUsage& usage, runtime::v1::FilesystemUsage* out);

}  // namespace podvisor::cri
