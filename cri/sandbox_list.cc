// ListPodSandbox and StreamPodSandboxes.

#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {
namespace {

void ListSandboxes(const Services& services, const runtime::v1::PodSandboxFilter& proto_filter,
                   google::protobuf::RepeatedPtrField<runtime::v1::PodSandbox>* out) {
  const SandboxFilter filter = FromProto(proto_filter);
  for (const Sandbox& s : services.sandboxes->List(filter)) ToProto(s, out->Add());
  if (services.host) {
    for (const Sandbox& s : services.host->ListSandboxes(filter)) ToProto(s, out->Add());
  }
}

}  // namespace

grpc::Status RuntimeService::ListPodSandbox(grpc::ServerContext*,
                                            const runtime::v1::ListPodSandboxRequest* request,
                                            runtime::v1::ListPodSandboxResponse* response) {
  return Serve("ListPodSandbox", [&] {
    ListSandboxes(*services_, request->filter(), response->mutable_items());
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::StreamPodSandboxes(
    grpc::ServerContext*, const runtime::v1::StreamPodSandboxesRequest* request,
    grpc::ServerWriter<runtime::v1::StreamPodSandboxesResponse>* writer) {
  return Serve("StreamPodSandboxes", [&] {
    google::protobuf::RepeatedPtrField<runtime::v1::PodSandbox> items;
    ListSandboxes(*services_, request->filter(), &items);
    return WritePaged("StreamPodSandboxes", writer, &items,
                      [](runtime::v1::StreamPodSandboxesResponse& m) {
                        return m.mutable_pod_sandboxes();
                      });
  });
}

}  // namespace podvisor::cri
