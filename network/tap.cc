#include "network/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "network/netlink.h"
#include "network/netns.h"
#include "network/pod_network.h"

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

absl::Status DeleteLink(const std::string& name) {
  unsigned index = ::if_nametoindex(name.c_str());
  if (index == 0) return absl::OkStatus();
  return NetlinkDeleteLink(static_cast<int>(index));
}

// Redirects both ways between the links (tc ingress qdisc + u32 + mirred on each).
absl::Status JoinLinks(int a, int b) {
  for (auto [from, to] : {std::pair{a, b}, std::pair{b, a}}) {
    if (absl::Status s = NetlinkAddIngressQdisc(from); !s.ok()) return s;
    if (absl::Status s = NetlinkAddRedirectFilter(from, to); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

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
    absl::Cleanup undo = [&] {
      (void)NetlinkDeleteIngressQdisc(info.index);
      (void)DeleteLink(tap_name);
    };
    if (absl::Status u = SetMtuAndUp(tap_name, info.mtu); !u.ok()) return u;
    int tap_index = static_cast<int>(::if_nametoindex(tap_name.c_str()));
    if (absl::Status j = JoinLinks(info.index, tap_index); !j.ok()) {
      return absl::Status(j.code(),
                          absl::StrCat("redirect ", ifname, " <-> ", tap_name, ": ", j.message()));
    }
    std::move(undo).Cancel();
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return info;
}

absl::Status CreateLoneTap(const std::string& netns_path, const std::string& tap_name) {
  if (absl::Status s = CheckIfName(tap_name); !s.ok()) return s;
  return RunInNetns(netns_path, [&]() -> absl::Status {
    if (LinkExists(tap_name)) {
      return absl::AlreadyExistsError(absl::StrCat("tap ", tap_name, " already exists"));
    }
    if (absl::Status p = SetTapPersist(tap_name, true); !p.ok()) return p;
    if (absl::Status u = SetMtuAndUp(tap_name, 0); !u.ok()) {
      (void)DeleteLink(tap_name);
      return u;
    }
    return absl::OkStatus();
  });
}

absl::Status DetachTap(const std::string& netns_path, const std::string& ifname,
                       const std::string& tap_name) {
  if (!IsNetns(netns_path)) return absl::OkStatus();
  return RunInNetns(netns_path, [&]() -> absl::Status {
    // Deleting the ingress qdisc drops its filters; the tap's go with the tap.
    if (unsigned index = ::if_nametoindex(ifname.c_str()); index != 0) {
      if (absl::Status s = NetlinkDeleteIngressQdisc(static_cast<int>(index)); !s.ok()) return s;
    }
    return DeleteLink(tap_name);
  });
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
