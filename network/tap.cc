#include "network/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "network/netns.h"
#include "network/pod_network.h"
#include "network/process.h"

namespace podvisor::network {
namespace {

absl::Status CheckIfName(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid interface name \"", name, "\""));
  }
  return absl::OkStatus();
}

ifreq MakeIfreq(const std::string& name) {
  ifreq ifr;
  std::memset(&ifr, 0, sizeof(ifr));
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  return ifr;
}

// An AF_INET datagram socket for interface ioctls in the calling thread's namespace.
class IoctlSocket {
 public:
  IoctlSocket() : fd_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {}
  ~IoctlSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

absl::Status SetMtuAndUp(const std::string& name, int mtu) {
  IoctlSocket sock;
  if (sock.fd() < 0) return ErrnoStatus("socket", errno);
  ifreq ifr = MakeIfreq(name);
  ifr.ifr_mtu = mtu;
  if (mtu > 0 && ::ioctl(sock.fd(), SIOCSIFMTU, &ifr) != 0) {
    return ErrnoStatus(absl::StrCat("set MTU ", mtu, " on ", name), errno);
  }
  ifr = MakeIfreq(name);
  if (::ioctl(sock.fd(), SIOCGIFFLAGS, &ifr) != 0) {
    return ErrnoStatus(absl::StrCat("get flags of ", name), errno);
  }
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(sock.fd(), SIOCSIFFLAGS, &ifr) != 0) {
    return ErrnoStatus(absl::StrCat("bring up ", name), errno);
  }
  return absl::OkStatus();
}

// Opens (creating if needed) the tap `name` in the calling thread's namespace.
absl::StatusOr<int> OpenTapHere(const std::string& name, int flags) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open /dev/net/tun", errno);
  ifreq ifr = MakeIfreq(name);
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | flags);
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(absl::StrCat("attach to tap ", name), err);
  }
  return fd;
}

absl::Status SetTapPersist(const std::string& name, bool persist) {
  absl::StatusOr<int> fd = OpenTapHere(name, 0);
  if (!fd.ok()) return fd.status();
  int rc = ::ioctl(*fd, TUNSETPERSIST, persist ? 1 : 0);
  int err = errno;
  ::close(*fd);
  if (rc != 0) return ErrnoStatus(absl::StrCat("set persist on tap ", name), err);
  return absl::OkStatus();
}

bool LinkExists(const std::string& name) { return ::if_nametoindex(name.c_str()) != 0; }

// Deletes a link with RTM_DELLINK in the calling thread's namespace. Unlike clearing a tap's
// persist flag this works while a VM still holds the tap open.
absl::Status DeleteLink(const std::string& name) {
  unsigned index = ::if_nametoindex(name.c_str());
  if (index == 0) return absl::OkStatus();
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return ErrnoStatus("netlink socket", errno);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct {
    nlmsghdr hdr;
    ifinfomsg ifi;
  } req{};
  req.hdr.nlmsg_len = sizeof(req);
  req.hdr.nlmsg_type = RTM_DELLINK;
  req.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.hdr.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = static_cast<int>(index);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &req, sizeof(req), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    return ErrnoStatus(absl::StrCat("delete link ", name), errno);
  }
  char buf[4096];
  ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) {
    return ErrnoStatus(absl::StrCat("delete link ", name, ": netlink answer"), errno);
  }
  const auto* hdr = reinterpret_cast<const nlmsghdr*>(buf);
  if (hdr->nlmsg_type == NLMSG_ERROR) {
    const auto* err = reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(hdr));
    if (err->error != 0 && err->error != -ENODEV) {
      return ErrnoStatus(absl::StrCat("delete link ", name), -err->error);
    }
  }
  return absl::OkStatus();
}

absl::Status RunTc(const std::string& netns_path, const std::string& batch, bool ignore_errors) {
  absl::StatusOr<std::string> tc = TcPath();
  if (!tc.ok()) return tc.status();
  ProcessOptions opts;
  // -force: go on after an error so an idempotent teardown removes what exists.
  opts.argv = {*tc, "-force", "-batch", "-"};
  opts.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  opts.stdin_data = batch;
  opts.netns_path = netns_path;
  opts.timeout = absl::Seconds(30);
  absl::StatusOr<ProcessResult> r = RunProcess(opts);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 && !ignore_errors) {
    return absl::InternalError(absl::StrCat("tc exited with ", r->exit_code, ": ",
                                            r->stderr_data, " (commands: ", batch, ")"));
  }
  return absl::OkStatus();
}

std::string RedirectCommands(const std::string& from, const std::string& to) {
  return absl::StrCat("qdisc add dev ", from, " ingress\n", "filter add dev ", from,
                      " parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect"
                      " dev ",
                      to, "\n");
}

}  // namespace

absl::StatusOr<std::string> TcPath() {
  return FindExecutable("tc", {"/usr/sbin", "/sbin", "/usr/bin", "/bin"});
}

absl::StatusOr<LinkInfo> GetLinkInfo(const std::string& name) {
  if (absl::Status s = CheckIfName(name); !s.ok()) return s;
  IoctlSocket sock;
  if (sock.fd() < 0) return ErrnoStatus("socket", errno);
  LinkInfo info;
  ifreq ifr = MakeIfreq(name);
  if (::ioctl(sock.fd(), SIOCGIFHWADDR, &ifr) != 0) {
    return ErrnoStatus(absl::StrCat("get MAC of ", name), errno);
  }
  const auto* m = reinterpret_cast<const unsigned char*>(ifr.ifr_hwaddr.sa_data);
  info.mac = absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  ifr = MakeIfreq(name);
  if (::ioctl(sock.fd(), SIOCGIFMTU, &ifr) != 0) {
    return ErrnoStatus(absl::StrCat("get MTU of ", name), errno);
  }
  info.mtu = ifr.ifr_mtu;
  info.index = static_cast<int>(::if_nametoindex(name.c_str()));
  return info;
}

absl::StatusOr<LinkInfo> AttachTap(const std::string& netns_path, const std::string& ifname,
                                   const std::string& tap_name) {
  if (absl::Status s = CheckIfName(ifname); !s.ok()) return s;
  if (absl::Status s = CheckIfName(tap_name); !s.ok()) return s;
  LinkInfo info;
  absl::Status s = RunInNetns(netns_path, [&]() -> absl::Status {
    absl::StatusOr<LinkInfo> link = GetLinkInfo(ifname);
    if (!link.ok()) return link.status();
    info = *link;
    if (LinkExists(tap_name)) {
      return absl::AlreadyExistsError(absl::StrCat("tap ", tap_name, " already exists"));
    }
    if (absl::Status p = SetTapPersist(tap_name, true); !p.ok()) return p;
    if (absl::Status u = SetMtuAndUp(tap_name, info.mtu); !u.ok()) {
      (void)DeleteLink(tap_name);
      return u;
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  absl::Cleanup undo = [&] { (void)DetachTap(netns_path, ifname, tap_name); };
  std::string batch =
      absl::StrCat(RedirectCommands(ifname, tap_name), RedirectCommands(tap_name, ifname));
  if (absl::Status t = RunTc(netns_path, batch, false); !t.ok()) {
    return absl::Status(t.code(), absl::StrCat("redirect ", ifname, " <-> ", tap_name, ": ",
                                               t.message()));
  }
  std::move(undo).Cancel();
  return info;
}

absl::Status DetachTap(const std::string& netns_path, const std::string& ifname,
                       const std::string& tap_name) {
  if (!IsNetns(netns_path)) return absl::OkStatus();
  bool tap_exists = false;
  bool if_exists = false;
  absl::Status s = RunInNetns(netns_path, [&]() -> absl::Status {
    tap_exists = LinkExists(tap_name);
    if_exists = LinkExists(ifname);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  if (if_exists) {
    // Deleting the ingress qdisc drops its filters; the tap's go with the tap.
    (void)RunTc(netns_path, absl::StrCat("qdisc del dev ", ifname, " ingress\n"), true);
  }
  if (!tap_exists) return absl::OkStatus();
  return RunInNetns(netns_path, [&] { return DeleteLink(tap_name); });
}

}  // namespace podvisor::network

namespace podvisor {

absl::StatusOr<int> OpenTap(const std::string& netns_path, const std::string& tap_name,
                            bool vnet_hdr) {
  if (absl::Status s = network::CheckIfName(tap_name); !s.ok()) return s;
  int fd = -1;
  absl::Status s = network::RunInNetns(netns_path, [&]() -> absl::Status {
    if (!network::LinkExists(tap_name)) {
      return absl::NotFoundError(absl::StrCat("no tap ", tap_name, " in ", netns_path));
    }
    absl::StatusOr<int> opened = network::OpenTapHere(tap_name, vnet_hdr ? IFF_VNET_HDR : 0);
    if (!opened.ok()) return opened.status();
    fd = *opened;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return fd;
}

}  // namespace podvisor
