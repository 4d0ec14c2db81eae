// ListImages and StreamImages.

#include "cri/image_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status ImageService::ListImages(grpc::ServerContext*,
                                      const runtime::v1::ListImagesRequest* request,
                                      runtime::v1::ListImagesResponse* response) {
  return Serve("ListImages", [&] {
    for (const ImageRecord& image : services_->images->List(request->filter().image().image())) {
      ToProto(image, response->add_images());
    }
    return absl::OkStatus();
  });
}

grpc::Status ImageService::StreamImages(
    grpc::ServerContext*, const runtime::v1::StreamImagesRequest* request,
    grpc::ServerWriter<runtime::v1::StreamImagesResponse>* writer) {
  return Serve("StreamImages", [&]() -> absl::Status {
    google::protobuf::RepeatedPtrField<runtime::v1::Image> items;
    for (const ImageRecord& image : services_->images->List(request->filter().image().image())) {
      ToProto(image, items.Add());
    }
    return WritePaged("StreamImages", writer, &items,
                      [](runtime::v1::StreamImagesResponse& m) { return m.mutable_images(); });
  });
}

}  // namespace podvisor::cri
