#include "agent/channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace podvisor::agent {
namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

Error MakeUnixAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr->sun_path)) {
    return Error(Code::kInvalidArgument, "bad unix socket path \"" + path + "\"");
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return Error::Ok();
}

}  // namespace

Error FindVirtioPort(const std::string& sysfs_root, const std::string& name, int timeout_ms,
                     std::string* device) {
  const std::string dir = sysfs_root + "/class/virtio-ports";
  for (int waited = 0;; waited += 20) {
    if (DIR* d = opendir(dir.c_str())) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        if (ReadFirstLine(dir + "/" + e->d_name + "/name") == name) {
          *device = std::string("/dev/") + e->d_name;
          closedir(d);
          return Error::Ok();
        }
      }
      closedir(d);
    }
    if (waited >= timeout_ms) break;
    usleep(20 * 1000);
  }
  return Error(Code::kNotFound, "no virtio-serial port named " + name + " under " + dir);
}

Error OpenChannel(const std::string& spec, int* fd, ChannelKind* kind) {
  if (spec.rfind("unix:", 0) == 0 || spec.rfind("listen:", 0) == 0) {
    const bool listen_mode = spec[0] == 'l';
    sockaddr_un addr;
    Error err = MakeUnixAddress(spec.substr(spec.find(':') + 1), &addr);
    if (!err.ok()) return err;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return ErrnoError("socket", errno);
    if (listen_mode) {
      unlink(addr.sun_path);
      if (bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(s, 1) != 0) {
        Error e = ErrnoError(std::string("listen on ") + addr.sun_path, errno);
        close(s);
        return e;
      }
      int c = accept4(s, nullptr, nullptr, SOCK_CLOEXEC);
      int saved = errno;
      close(s);
      if (c < 0) return ErrnoError("accept", saved);
      *fd = c;
    } else {
      if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        Error e = ErrnoError(std::string("connect to ") + addr.sun_path, errno);
        close(s);
        return e;
      }
      *fd = s;
    }
    *kind = ChannelKind::kSocket;
    return Error::Ok();
  }
  int f = open(spec.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (f < 0) return ErrnoError("open " + spec, errno);
  *fd = f;
  *kind = ChannelKind::kVirtioPort;
  return Error::Ok();
}

FrameChannel::~FrameChannel() {
  if (fd_ >= 0) close(fd_);
}

Error FrameChannel::ReadFull(char* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = read(fd_, buf + done, len - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return Error(Code::kUnavailable, "channel closed by the host");
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      pollfd p{fd_, POLLIN, 0};
      poll(&p, 1, 1000);
      continue;
    }
    return ErrnoError("read channel", errno);
  }
  return Error::Ok();
}

Error FrameChannel::ReadFrame(std::string* payload) {
  unsigned char header[4];
  Error err = ReadFull(reinterpret_cast<char*>(header), sizeof(header));
  if (!err.ok()) return err;
  const uint32_t len = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) |
                       (uint32_t{header[2]} << 8) | uint32_t{header[3]};
  if (len > kMaxFrameBytes) {
    return Error(Code::kInvalidArgument,
                 "frame of " + std::to_string(len) + " bytes exceeds the limit");
  }
  payload->resize(len);
  return ReadFull(payload->data(), len);
}

void FrameChannel::Drain(int quiet_ms) {
  char buf[4096];
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, quiet_ms) <= 0 || !(p.revents & POLLIN)) return;
    if (read(fd_, buf, sizeof(buf)) <= 0) return;
  }
}

Error FrameChannel::WriteFrame(const std::string& payload) {
  if (payload.size() > kMaxFrameBytes) {
    return Error(Code::kResourceExhausted, "outgoing frame too large");
  }
  std::string buf;
  buf.reserve(4 + payload.size());
  const uint32_t len = static_cast<uint32_t>(payload.size());
  buf.push_back(static_cast<char>(len >> 24));
  buf.push_back(static_cast<char>(len >> 16));
  buf.push_back(static_cast<char>(len >> 8));
  buf.push_back(static_cast<char>(len));
  buf.append(payload);
  std::lock_guard<std::mutex> lock(write_mu_);
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = kind_ == ChannelKind::kSocket
                    ? send(fd_, buf.data() + done, buf.size() - done, MSG_NOSIGNAL)
                    : write(fd_, buf.data() + done, buf.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return ErrnoError("write channel", errno);
  }
  return Error::Ok();
}

}  // namespace podvisor::agent
