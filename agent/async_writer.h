#pragma once

// Writes to a pipe, pty or socket on a thread of its own, so that a container that does not
// read its stdin (or a guest server that does not read its socket) never blocks the agent's
// channel reader. Protocol v1 has no stream flow control: pending bytes wait in memory.

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace podvisor::agent {

class AsyncWriter {
 public:
  // Takes ownership of `fd` (pass a dup() to keep using the file) and closes it when done.
  // `on_eof` runs on the writer thread after everything queued before Finish() was written,
  // before the close (e.g. shutdown(SHUT_WR) a socket, send ^D to a pty).
  static std::shared_ptr<AsyncWriter> Start(int fd, std::function<void(int fd)> on_eof);

  void Write(std::string data);
  void Finish();
  // Stops at once, dropping what is queued; does not run on_eof.
  void Abort();

 private:
  AsyncWriter(int fd, std::function<void(int)> on_eof) : fd_(fd), on_eof_(std::move(on_eof)) {}
  void Run();

  int fd_;
  std::function<void(int)> on_eof_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool finish_ = false;
  bool abort_ = false;
};

}  // namespace podvisor::agent
