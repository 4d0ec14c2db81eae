#include "test/support/cri_client.h"

#include <chrono>

namespace podvisor::testing {

CriClient::CriClient(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  std::string target = endpoint;
  if (target.rfind("unix://", 0) == 0) target = "unix:" + target.substr(7);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  runtime_ = runtime::v1::RuntimeService::NewStub(channel_);
  image_ = runtime::v1::ImageService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> CriClient::Context(int timeout_seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  return ctx;
}

}  // namespace podvisor::testing
