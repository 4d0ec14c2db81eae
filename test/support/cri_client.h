#pragma once

// A CRI client built from proto/ for e2e and integration tests: the same wire protocol kubelet
// and crictl speak.

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "runtime/v1/api.grpc.pb.h"

namespace podvisor::testing {

class CriClient {
 public:
  // `endpoint` is unix:///path.sock.
  explicit CriClient(const std::string& endpoint);

  runtime::v1::RuntimeService::Stub& runtime() { return *runtime_; }
  runtime::v1::ImageService::Stub& image() { return *image_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

  // A context with a deadline (seconds from now).
  static std::unique_ptr<grpc::ClientContext> Context(int timeout_seconds = 30);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<runtime::v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<runtime::v1::ImageService::Stub> image_;
};

}  // namespace podvisor::testing
