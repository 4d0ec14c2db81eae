#pragma once

// Helpers shared by the CRI handlers. Included only by cri/*.cc: it pulls in gRPC.

#include <exception>


#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace podvisor::cri {

// The one place an absl::Status becomes a gRPC status (the codes are numerically the same).
grpc::Status ToGrpcStatus(const absl::Status& status);

// Logs one finished call (method, outcome and latency at debug level; failures at warning) and
// records it in podvisor_cri_request_duration_seconds.
void LogCall(absl::string_view method, const absl::Status& status, absl::Duration latency);

// UNIMPLEMENTED, with a sentence naming the RPC and why.
absl::Status NotImplemented(absl::string_view method, absl::string_view why);

// Runs a handler body, maps its status and logs the call. Exceptions (which no module should let
// escape) become INTERNAL so that no request can take the daemon down.
template <typename Fn>
grpc::Status Serve(absl::string_view method, Fn&& fn) {
  const absl::Time start = absl::Now();
  absl::Status status;
  try {
    status = fn();
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat(method, ": unexpected error: ", e.what()));
  } catch (...) {
    status = absl::InternalError(absl::StrCat(method, ": unexpected error"));
  }
  LogCall(method, status, absl::Now() - start);
  return ToGrpcStatus(status);
}

}  // namespace podvisor::cri
