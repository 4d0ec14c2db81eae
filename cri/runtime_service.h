#pragma once

// The CRI RuntimeService and ImageService. Each handler validates its request, converts it to
// domain types, makes one controller call and converts back. Handlers live in one file per RPC
// group (runtime_info.cc, sandbox_*.cc, container_*.cc, image_*.cc, ...).

#include "cri/services.h"
#include "runtime/v1/api.grpc.pb.h"

namespace podvisor::cri {

#define PODVISOR_CRI_UNARY(Name, Req, Resp)                                 \
  grpc::Status Name(grpc::ServerContext* context, const runtime::v1::Req* request, \
                    runtime::v1::Resp* response) override;
#define PODVISOR_CRI_RPC(Name) PODVISOR_CRI_UNARY(Name, Name##Request, Name##Response)
#define PODVISOR_CRI_STREAM(Name, Req, Resp)                                       \
  grpc::Status Name(grpc::ServerContext* context, const runtime::v1::Req* request, \
                    grpc::ServerWriter<runtime::v1::Resp>* writer) override;

class RuntimeService final : public runtime::v1::RuntimeService::Service {
 public:
  explicit RuntimeService(Services* services) : services_(services) {}

  PODVISOR_CRI_RPC(Version)
  PODVISOR_CRI_RPC(RunPodSandbox)
  PODVISOR_CRI_RPC(StopPodSandbox)
  PODVISOR_CRI_RPC(RemovePodSandbox)
  PODVISOR_CRI_RPC(PodSandboxStatus)
  PODVISOR_CRI_RPC(ListPodSandbox)
  PODVISOR_CRI_STREAM(StreamPodSandboxes, StreamPodSandboxesRequest, StreamPodSandboxesResponse)
  PODVISOR_CRI_RPC(CreateContainer)
  PODVISOR_CRI_RPC(StartContainer)
  PODVISOR_CRI_RPC(StopContainer)
  PODVISOR_CRI_RPC(RemoveContainer)
  PODVISOR_CRI_RPC(ListContainers)
  PODVISOR_CRI_STREAM(StreamContainers, StreamContainersRequest, StreamContainersResponse)
  PODVISOR_CRI_RPC(ContainerStatus)
  PODVISOR_CRI_RPC(UpdateContainerResources)
  PODVISOR_CRI_RPC(ReopenContainerLog)
  PODVISOR_CRI_RPC(ExecSync)
  PODVISOR_CRI_RPC(Exec)
  PODVISOR_CRI_RPC(Attach)
  PODVISOR_CRI_RPC(PortForward)
  PODVISOR_CRI_RPC(ContainerStats)
  PODVISOR_CRI_RPC(ListContainerStats)
  PODVISOR_CRI_STREAM(StreamContainerStats, StreamContainerStatsRequest,
                      StreamContainerStatsResponse)
  PODVISOR_CRI_RPC(PodSandboxStats)
  PODVISOR_CRI_RPC(ListPodSandboxStats)
  PODVISOR_CRI_STREAM(StreamPodSandboxStats, StreamPodSandboxStatsRequest,
                      StreamPodSandboxStatsResponse)
  PODVISOR_CRI_RPC(UpdateRuntimeConfig)
  PODVISOR_CRI_RPC(Status)
  PODVISOR_CRI_RPC(CheckpointContainer)
  PODVISOR_CRI_STREAM(GetContainerEvents, GetEventsRequest, ContainerEventResponse)
  PODVISOR_CRI_RPC(ListMetricDescriptors)
  PODVISOR_CRI_RPC(ListPodSandboxMetrics)
  PODVISOR_CRI_STREAM(StreamPodSandboxMetrics, StreamPodSandboxMetricsRequest,
                      StreamPodSandboxMetricsResponse)
  PODVISOR_CRI_RPC(RuntimeConfig)
  PODVISOR_CRI_RPC(UpdatePodSandboxResources)

 private:
  Services* const services_;
};

class ImageService final : public runtime::v1::ImageService::Service {
 public:
  explicit ImageService(Services* services) : services_(services) {}

  PODVISOR_CRI_RPC(ListImages)
  PODVISOR_CRI_STREAM(StreamImages, StreamImagesRequest, StreamImagesResponse)
  PODVISOR_CRI_RPC(ImageStatus)
  PODVISOR_CRI_RPC(PullImage)
  PODVISOR_CRI_RPC(RemoveImage)
  PODVISOR_CRI_RPC(ImageFsInfo)

 private:
  Services* const services_;
};

#undef PODVISOR_CRI_UNARY
#undef PODVISOR_CRI_RPC
#undef PODVISOR_CRI_STREAM

}  // namespace podvisor::cri
