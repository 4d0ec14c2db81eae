#include "agent/async_writer.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace podvisor::agent {

std::shared_ptr<AsyncWriter> AsyncWriter::Start(int fd, std::function<void(int)> on_eof) {
  std::shared_ptr<AsyncWriter> w(new AsyncWriter(fd, std::move(on_eof)));
  std::thread([w] { w->Run(); }).detach();
  return w;
}

void AsyncWriter::Write(std::string data) {
  if (data.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finish_ || abort_) return;
  queue_.push_back(std::move(data));
  cv_.notify_all();
}

void AsyncWriter::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  finish_ = true;
  cv_.notify_all();
}

void AsyncWriter::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  abort_ = true;
  queue_.clear();
  cv_.notify_all();
}

void AsyncWriter::Run() {
  struct stat st;
  const bool is_socket = fstat(fd_, &st) == 0 && S_ISSOCK(st.st_mode);
  bool broken = false;
  for (;;) {
    std::string chunk;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return abort_ || finish_ || !queue_.empty(); });
      if (abort_) break;
      if (queue_.empty()) break;  // finished and drained
      chunk = std::move(queue_.front());
      queue_.pop_front();
    }
    size_t done = 0;
    while (!broken && done < chunk.size()) {
      ssize_t n = is_socket ? send(fd_, chunk.data() + done, chunk.size() - done, MSG_NOSIGNAL)
                            : write(fd_, chunk.data() + done, chunk.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        broken = true;  // the reader went away: drop the rest
        break;
      }
      done += static_cast<size_t>(n);
    }
  }
  bool aborted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborted = abort_;
  }
  if (!aborted && on_eof_) on_eof_(fd_);
  close(fd_);
}

}  // namespace podvisor::agent
