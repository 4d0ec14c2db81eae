// PullImage.

#include "common/metrics.h"
#include "cri/image_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status ImageService::PullImage(grpc::ServerContext*,
                                     const runtime::v1::PullImageRequest* request,
                                     runtime::v1::PullImageResponse* response) {
  return Serve("PullImage", [&]() -> absl::Status {
    const std::string& name = request->image().image();
    if (name.empty()) return absl::InvalidArgumentError("PullImage: image name is empty");
    const absl::Time start = absl::Now();
    absl::StatusOr<ImageRecord> image = services_->images->Pull(name, FromProto(request->auth()));
    metrics::ObserveImagePull(absl::ToDoubleSeconds(absl::Now() - start), image.ok());
    if (!image.ok()) return image.status();
    response->set_image_ref(image->metadata.id);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
