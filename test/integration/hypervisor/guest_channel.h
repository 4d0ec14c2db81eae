#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace podvisor::testing {

// The host end of a test guest's agent port (see test_init.c): a unix socket client that sends
// and receives lines. Not thread-safe.
class GuestChannel {
 public:
  // Connects to `socket_path`, retrying until `deadline` while QEMU has not created it yet.
  static absl::StatusOr<GuestChannel> Connect(const std::string& socket_path,
                                              absl::Time deadline);
  GuestChannel(GuestChannel&& other) noexcept : fd_(other.fd_), buffer_(std::move(other.buffer_)) {
    other.fd_ = -1;
  }
  GuestChannel& operator=(GuestChannel&&) = delete;
  ~GuestChannel();

  // The next line (without '\n'); DEADLINE_EXCEEDED if none arrives in time.
  absl::StatusOr<std::string> ReadLine(absl::Time deadline);
  absl::Status Send(const std::string& line);
  // Raw bytes, for speaking the real agent protocol (length-prefixed frames).
  absl::Status SendBytes(const std::string& bytes);
  absl::StatusOr<std::string> ReadBytes(size_t n, absl::Time deadline);
  // Sends `command` and returns the answer line.
  absl::StatusOr<std::string> Ask(const std::string& command, absl::Duration timeout);

 private:
  explicit GuestChannel(int fd) : fd_(fd) {}
  // Reads what is available into buffer_, waiting until `deadline`.
  absl::Status Fill(absl::Time deadline);
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace podvisor::testing
