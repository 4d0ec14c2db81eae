#pragma once

// Helpers shared by the CRI handlers. Included only by cri/*.cc: it pulls in gRPC.

#include <exception>
#include <vector>


#include <google/protobuf/repeated_ptr_field.h>
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

// Items per message of the Stream* list RPCs: far under the message size limit whatever the
// items hold, few enough messages for thousands of pods.
inline constexpr int kStreamPage = 100;

// `items` (moved out) in messages of at most kStreamPage items; `field(message)` is the
// message's repeated field. No message for no items.
template <typename Resp, typename Item, typename Field>
std::vector<Resp> Pages(google::protobuf::RepeatedPtrField<Item>* items, Field field) {
  std::vector<Resp> pages;
  for (Item& item : *items) {
    if (pages.empty() || field(pages.back())->size() == kStreamPage) pages.emplace_back();
    *field(pages.back())->Add() = std::move(item);
  }
  return pages;
}

// Sends Pages(items, field). CANCELLED when the client went away.
template <typename Resp, typename Item, typename Field>
absl::Status WritePaged(absl::string_view method, grpc::ServerWriter<Resp>* writer,
                        google::protobuf::RepeatedPtrField<Item>* items, Field field) {
  for (const Resp& page : Pages<Resp>(items, field)) {
    if (!writer->Write(page)) {
      return absl::CancelledError(absl::StrCat(method, ": client went away"));
    }
  }
  return absl::OkStatus();
}

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
