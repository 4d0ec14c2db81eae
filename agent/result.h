#pragma once

// The agent's error type. The guest binary is static and small, so it does not link Abseil; this
// carries the same codes (google.rpc.Code numbering) as absl::Status and the wire Status.

#include <string>
#include <utility>

namespace podvisor::agent {

enum class Code : int {
  kOk = 0,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
};

class Error {
 public:
  Error() = default;
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Error Ok() { return Error(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // Returns a copy with "context: " in front of the message.
  Error With(const std::string& context) const {
    return ok() ? *this : Error(code_, context + ": " + message_);
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// An error for a failed system call: "what: strerror(err)", code chosen from errno.
Error ErrnoError(const std::string& what, int err);

}  // namespace podvisor::agent
