// PullImage.

#include <chrono>

#include "common/metrics.h"
#include "cri/image_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status ImageService::PullImage(grpc::ServerContext* context,
                                     const runtime::v1::PullImageRequest* request,
                                     runtime::v1::PullImageResponse* response) {
  return Serve("PullImage", [&]() -> absl::Status {
    const std::string& name = request->image().image();
    if (name.empty()) return absl::InvalidArgumentError("PullImage: image name is empty");
    // A client that hangs up or whose deadline passes abandons the pull: its transfers stop and
    // its download slots are freed for other pulls.
    auto cancelled = [context] {
      return context != nullptr &&
             (context->IsCancelled() || context->deadline() <= std::chrono::system_clock::now());
    };
    const absl::Time start = absl::Now();
    absl::StatusOr<ImageRecord> image =
        services_->images->PullCancellable(name, FromProto(request->auth()), cancelled);
    metrics::ObserveImagePull(absl::ToDoubleSeconds(absl::Now() - start), image.ok());
    if (!image.ok()) return image.status();
    // CRI v1.36: the one identifier Image.id, Container.image_id and ContainerStatus.image_id
    // also carry.
    response->set_image_ref(image->metadata.id);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
