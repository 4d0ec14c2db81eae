#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "network/pod_network.h"

namespace podvisor::testing {

// Plays the VM behind a pod's tap, with no VM: a "guest" network namespace holding a tap named
// eth0 configured from the PodNetwork exactly as the guest agent does it (MAC, MTU, IPs, routes),
// and a thread copying frames between the pod's tap (opened with OpenTap) and the guest's tap —
// what QEMU's userspace virtio-net backend does. Not thread-safe.
class FakeGuest {
 public:
  // `dir` holds the guest netns file.
  static absl::StatusOr<std::unique_ptr<FakeGuest>> Start(const PodNetwork& net,
                                                          const std::string& dir);
  ~FakeGuest();

  const std::string& netns() const { return netns_; }

  // A socket created inside the guest's namespace (e.g. a listener or a client).
  absl::StatusOr<int> Socket(int domain, int type) const;

  uint64_t frames_to_guest() const { return to_guest_.load(); }
  uint64_t frames_from_guest() const { return from_guest_.load(); }

 private:
  FakeGuest() = default;
  void Pump();

  std::string netns_;
  int pod_tap_ = -1;
  int guest_tap_ = -1;
  int stop_fd_ = -1;
  std::thread pump_;
  std::atomic<uint64_t> to_guest_{0};
  std::atomic<uint64_t> from_guest_{0};
};

// Runs iproute2's `ip` with `args` inside the netns at `netns` ("" for the host).
absl::Status RunIp(const std::string& netns, const std::vector<std::string>& args);

// A TCP listener on port 0 in `socket_fd` (from FakeGuest::Socket or socket()); returns the port.
absl::StatusOr<int> ListenTcp(int socket_fd);

// Connects `socket_fd` to ip:port (IPv4) with a timeout.
absl::Status ConnectTcp(int socket_fd, const std::string& ip, int port, int timeout_ms = 10000);

// Accepts one connection on `listener` within `timeout_ms`; returns the connected fd.
absl::StatusOr<int> AcceptTcp(int listener, int timeout_ms = 10000);

// Writes `data` fully / reads exactly `n` bytes (with a timeout).
absl::Status WriteAll(int fd, const std::string& data);
absl::StatusOr<std::string> ReadExactly(int fd, size_t n, int timeout_ms = 10000);

}  // namespace podvisor::testing
