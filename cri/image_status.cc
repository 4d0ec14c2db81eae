// ImageStatus.

#include "cri/image_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status ImageService::ImageStatus(grpc::ServerContext*,
                                       const runtime::v1::ImageStatusRequest* request,
                                       runtime::v1::ImageStatusResponse* response) {
  return Serve("ImageStatus", [&]() -> absl::Status {
    const std::string& name = request->image().image();
    if (name.empty()) return absl::InvalidArgumentError("ImageStatus: image name is empty");
    absl::StatusOr<ImageRecord> image = services_->images->Get(name);
    // An absent image is an empty answer, not an error (kubelet checks presence this way).
    if (absl::IsNotFound(image.status())) return absl::OkStatus();
    if (!image.ok()) return image.status();
    ToProto(*image, response->mutable_image());
    if (request->verbose()) {
      absl::StatusOr<std::string> info = services_->images->VerboseInfo(*image);
      if (!info.ok()) return info.status();
      (*response->mutable_info())["info"] = *info;
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
