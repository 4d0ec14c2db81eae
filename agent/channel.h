#pragma once

// The agent's end of the host channel: opening it (virtio-serial port or unix socket) and moving
// length-prefixed frames over it.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "agent/result.h"

namespace podvisor::agent {

// Largest frame payload either side accepts (the host enforces the same bound).
inline constexpr uint32_t kMaxFrameBytes = 4u << 20;

// The name the host gives the agent's virtio-serial port.
inline constexpr const char kAgentPortName[] = "io.podvisor.agent.0";

enum class ChannelKind {
  kVirtioPort,  // /dev/vportNpM: EOF means "host not connected (yet)", never fatal
  kSocket,      // a unix socket (tests): EOF means the host is gone
};

// Finds the virtio-serial port named `name` under `sysfs_root`/class/virtio-ports and returns
// its device path ("/dev/vport1p1"). Waits up to `timeout_ms` for it to appear.
Error FindVirtioPort(const std::string& sysfs_root, const std::string& name, int timeout_ms,
                     std::string* device);

// Opens `spec`: "unix:<path>" connects to a listening socket, "listen:<path>" listens there and
// accepts one connection, anything else is a device path. Sets *kind.
Error OpenChannel(const std::string& spec, int* fd, ChannelKind* kind);

// Reads and writes frames on one fd. ReadFrame is called by one thread; WriteFrame is
// thread-safe (whole frames never interleave).
class FrameChannel {
 public:
  FrameChannel(int fd, ChannelKind kind) : fd_(fd), kind_(kind) {}
  ~FrameChannel();
  FrameChannel(const FrameChannel&) = delete;
  FrameChannel& operator=(const FrameChannel&) = delete;

  // Reads one frame payload. Returns kUnavailable on EOF (for a virtio port: the host closed its
  // end; the caller waits and reads again), kInvalidArgument on a frame over kMaxFrameBytes.
  Error ReadFrame(std::string* payload);
  Error WriteFrame(const std::string& payload);
  // Discards input until none arrives for quiet_ms (after a broken frame the stream is out of
  // step; the host starts again with a Hello).
  void Drain(int quiet_ms);

  ChannelKind kind() const { return kind_; }
  int fd() const { return fd_; }

 private:
  Error ReadFull(char* buf, size_t len);

  int fd_;
  ChannelKind kind_;
  std::mutex write_mu_;
};

}  // namespace podvisor::agent
