// RuntimeService RPCs that podvisor does not serve yet: each answers UNIMPLEMENTED with a
// sentence naming it. A handler moves to its own file when it is built.

#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::CheckpointContainer(grpc::ServerContext*, const runtime::v1::CheckpointContainerRequest*,
                                 runtime::v1::CheckpointContainerResponse*) {
  return Serve("CheckpointContainer", [] { return NotImplemented("CheckpointContainer", "checkpointing a container inside a VM is not supported"); });
}

}  // namespace podvisor::cri
