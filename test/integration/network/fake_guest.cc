#include "test/integration/network/fake_guest.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "network/netns.h"
#include "network/process.h"

namespace podvisor::testing {
namespace {

absl::StatusOr<int> MakeGuestTap(const std::string& mac, int mtu) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open /dev/net/tun", errno);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "eth0", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("create guest tap", err);
  }
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq req{};
  std::strncpy(req.ifr_name, "eth0", IFNAMSIZ - 1);
  req.ifr_hwaddr.sa_family = 1;  // ARPHRD_ETHER
  std::vector<std::string> parts = absl::StrSplit(mac, ':');
  for (size_t i = 0; i < 6 && i < parts.size(); ++i) {
    req.ifr_hwaddr.sa_data[i] = static_cast<char>(std::stoul(parts[i], nullptr, 16));
  }
  absl::Status s;
  if (::ioctl(sock, SIOCSIFHWADDR, &req) != 0) s = ErrnoStatus("set guest MAC", errno);
  req.ifr_mtu = mtu;
  if (s.ok() && ::ioctl(sock, SIOCSIFMTU, &req) != 0) s = ErrnoStatus("set guest MTU", errno);
  ::close(sock);
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  return fd;
}

}  // namespace

absl::Status RunIp(const std::string& netns, const std::vector<std::string>& args) {
  absl::StatusOr<std::string> ip = network::FindExecutable("ip", {"/usr/sbin", "/sbin", "/bin"});
  if (!ip.ok()) return ip.status();
  network::ProcessOptions opts;
  opts.argv = {*ip};
  opts.argv.insert(opts.argv.end(), args.begin(), args.end());
  opts.netns_path = netns;
  absl::StatusOr<network::ProcessResult> r = network::RunProcess(opts);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("ip ", absl::StrJoin(args, " "), ": ", r->stderr_data));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FakeGuest>> FakeGuest::Start(const PodNetwork& net,
                                                            const std::string& dir) {
  std::unique_ptr<FakeGuest> g(new FakeGuest());
  g->netns_ = absl::StrCat(dir, "/guest-", net.sandbox_id);
  if (absl::Status s = network::CreateNetns(g->netns_); !s.ok()) return s;
  absl::Status s = network::RunInNetns(g->netns_, [&]() -> absl::Status {
    absl::StatusOr<int> fd = MakeGuestTap(net.mac, net.mtu);
    if (!fd.ok()) return fd.status();
    g->guest_tap_ = *fd;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  // What the agent does with the PodNetwork inside the VM.
  std::vector<std::vector<std::string>> cmds = {{"link", "set", "lo", "up"},
                                                {"link", "set", "eth0", "up"}};
  for (const auto& ip : net.ips) {
    // The address was checked for duplicates on the pod's eth0 already: skip DAD's delay.
    std::vector<std::string> add = {"addr", "add", ip.Cidr(), "dev", "eth0"};
    if (ip.family == 6) add.push_back("nodad");
    cmds.push_back(add);
  }
  for (const auto& r : net.routes) {
    if (r.gateway.empty()) {
      cmds.push_back({"route", "add", r.destination, "dev", "eth0"});
    } else {
      cmds.push_back({"route", "add", r.destination, "via", r.gateway, "dev", "eth0"});
    }
  }
  for (const auto& c : cmds) {
    if (absl::Status s = RunIp(g->netns_, c); !s.ok()) return s;
  }
  absl::StatusOr<int> pod_tap = OpenTap(net.netns_path, net.tap_name, /*vnet_hdr=*/false);
  if (!pod_tap.ok()) return pod_tap.status();
  g->pod_tap_ = *pod_tap;
  g->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  g->pump_ = std::thread([raw = g.get()] { raw->Pump(); });
  return g;
}

void FakeGuest::Pump() {
  char frame[65536];
  while (true) {
    pollfd fds[3] = {{pod_tap_, POLLIN, 0}, {guest_tap_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[2].revents != 0) return;
    if (fds[0].revents & POLLIN) {
      ssize_t n = ::read(pod_tap_, frame, sizeof(frame));
      if (n > 0 && ::write(guest_tap_, frame, static_cast<size_t>(n)) == n) ++to_guest_;
    }
    if (fds[1].revents & POLLIN) {
      ssize_t n = ::read(guest_tap_, frame, sizeof(frame));
      if (n > 0 && ::write(pod_tap_, frame, static_cast<size_t>(n)) == n) ++from_guest_;
    }
  }
}

FakeGuest::~FakeGuest() {
  if (pump_.joinable()) {
    uint64_t one = 1;
    ssize_t ignored = ::write(stop_fd_, &one, sizeof(one));
    (void)ignored;
    pump_.join();
  }
  for (int fd : {pod_tap_, guest_tap_, stop_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  if (!netns_.empty()) (void)network::RemoveNetns(netns_);
}

absl::StatusOr<int> FakeGuest::Socket(int domain, int type) const {
  int fd = -1;
  absl::Status s = network::RunInNetns(netns_, [&]() -> absl::Status {
    fd = ::socket(domain, type | SOCK_CLOEXEC, 0);
    return fd < 0 ? ErrnoStatus("socket in guest", errno) : absl::OkStatus();
  });
  if (!s.ok()) return s;
  return fd;
}

absl::StatusOr<int> ListenTcp(int fd) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoStatus("bind", errno);
  }
  if (::listen(fd, 16) != 0) return ErrnoStatus("listen", errno);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

absl::Status ConnectTcp(int fd, const std::string& ip, int port, int timeout_ms) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("bad IPv4 ", ip));
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoStatus(absl::StrCat("connect to ", ip, ":", port), errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> AcceptTcp(int listener, int timeout_ms) {
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return absl::DeadlineExceededError("no connection to accept");
  int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return ErrnoStatus("accept", errno);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("send", errno);
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadExactly(int fd, size_t n, int timeout_ms) {
  std::string out;
  out.resize(n);
  size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return absl::DeadlineExceededError("read timed out");
    ssize_t r = ::recv(fd, out.data() + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus("recv", errno);
    if (r == 0) return absl::DataLossError(absl::StrCat("EOF after ", got, " bytes"));
    got += static_cast<size_t>(r);
  }
  return out;
}

}  // namespace podvisor::testing
