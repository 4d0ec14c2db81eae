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
  // The same list as ListImages, sent in batches so that no message nears the size limit.
  constexpr int kBatch = 500;
  return Serve("StreamImages", [&]() -> absl::Status {
    runtime::v1::StreamImagesResponse batch;
    for (const ImageRecord& image : services_->images->List(request->filter().image().image())) {
      ToProto(image, batch.add_images());
      if (batch.images_size() == kBatch) {
        if (!writer->Write(batch)) return absl::CancelledError("StreamImages: client went away");
        batch.Clear();
      }
    }
    if (batch.images_size() > 0 && !writer->Write(batch)) {
      return absl::CancelledError("StreamImages: client went away");
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
