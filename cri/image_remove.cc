// RemoveImage.

#include "cri/image_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status ImageService::RemoveImage(grpc::ServerContext*,
                                       const runtime::v1::RemoveImageRequest* request,
                                       runtime::v1::RemoveImageResponse*) {
  return Serve("RemoveImage", [&]() -> absl::Status {
    const std::string& name = request->image().image();
    if (name.empty()) return absl::InvalidArgumentError("RemoveImage: image name is empty");
    return services_->images->Remove(name);
  });
}

}  // namespace podvisor::cri
