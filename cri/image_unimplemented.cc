// ImageService RPCs that podvisor does not serve yet.

#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status ImageService::ListImages(grpc::ServerContext*, const runtime::v1::ListImagesRequest*,
                               runtime::v1::ListImagesResponse*) {
  return Serve("ListImages", [] { return NotImplemented("ListImages", "the image service is being built"); });
}

grpc::Status ImageService::ImageStatus(grpc::ServerContext*, const runtime::v1::ImageStatusRequest*,
                               runtime::v1::ImageStatusResponse*) {
  return Serve("ImageStatus", [] { return NotImplemented("ImageStatus", "the image service is being built"); });
}

grpc::Status ImageService::PullImage(grpc::ServerContext*, const runtime::v1::PullImageRequest*,
                               runtime::v1::PullImageResponse*) {
  return Serve("PullImage", [] { return NotImplemented("PullImage", "the image service is being built"); });
}

grpc::Status ImageService::RemoveImage(grpc::ServerContext*, const runtime::v1::RemoveImageRequest*,
                               runtime::v1::RemoveImageResponse*) {
  return Serve("RemoveImage", [] { return NotImplemented("RemoveImage", "the image service is being built"); });
}

grpc::Status ImageService::ImageFsInfo(grpc::ServerContext*, const runtime::v1::ImageFsInfoRequest*,
                               runtime::v1::ImageFsInfoResponse*) {
  return Serve("ImageFsInfo", [] { return NotImplemented("ImageFsInfo", "the image service is being built"); });
}

grpc::Status ImageService::StreamImages(grpc::ServerContext*, const runtime::v1::StreamImagesRequest*,
                                       grpc::ServerWriter<runtime::v1::StreamImagesResponse>*) {
  return Serve("StreamImages", [] { return NotImplemented("StreamImages", "use ListImages"); });
}

}  // namespace podvisor::cri
