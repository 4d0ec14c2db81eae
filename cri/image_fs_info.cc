// ImageFsInfo.

#include "cri/image_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status ImageService::ImageFsInfo(grpc::ServerContext*, const runtime::v1::ImageFsInfoRequest*,
                                       runtime::v1::ImageFsInfoResponse* response) {
  return Serve("ImageFsInfo", [&]() -> absl::Status {
    absl::StatusOr<ImageFsUsage> usage = services_->images->FsUsage();
    if (!usage.ok()) return usage.status();
    // Images and container layers share one store: the same filesystem for both, which kubelet
    // reads as "no separate image filesystem".
    ToProto(*usage, response->add_image_filesystems());
    ToProto(*usage, response->add_container_filesystems());
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
