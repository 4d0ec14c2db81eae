#include "cri/rpc.h"

#include "common/log.h"
#include "common/metrics.h"

namespace podvisor::cri {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void LogCall(absl::string_view method, const absl::Status& status, absl::Duration latency) {
  const double ms = absl::ToDoubleMilliseconds(latency);
  metrics::ObserveCriRequest(std::string_view(method.data(), method.size()),
                             absl::StatusCodeToString(status.code()),
                             absl::ToDoubleSeconds(latency));
  if (status.ok()) {
    PV_LOG(kDebug) << "rpc " << method << " OK " << ms << "ms";
    return;
  }
  if (status.code() == absl::StatusCode::kNotFound ||
      status.code() == absl::StatusCode::kUnimplemented) {
    // kubelet probes for these routinely; they are answers, not daemon trouble.
    PV_LOG(kDebug) << "rpc " << method << " " << absl::StatusCodeToString(status.code()) << " "
                   << ms << "ms: " << status.message();
    return;
  }
  PV_LOG(kWarning) << "rpc " << method << " " << absl::StatusCodeToString(status.code()) << " "
                   << ms << "ms: " << status.message();
}

absl::Status NotImplemented(absl::string_view method, absl::string_view why) {
  return absl::UnimplementedError(absl::StrCat(method, " is not implemented by podvisor yet: ", why));
}

}  // namespace podvisor::cri
