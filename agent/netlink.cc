#include "agent/netlink.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// NLMSG_OK compares the kernel's unsigned lengths with an int: clang warns inside the macro.
#pragma GCC diagnostic ignored "-Wsign-compare"

namespace podvisor::agent {
namespace {

// Appends `len` bytes to `msg`, padded to NLMSG_ALIGN.
void AppendRaw(std::string* msg, const void* data, size_t len) {
  msg->append(static_cast<const char*>(data), len);
  msg->append(NLMSG_ALIGN(len) - len, '\0');
}

void AppendAttr(std::string* msg, uint16_t type, const void* data, size_t len) {
  rtattr rta;
  rta.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
  rta.rta_type = type;
  msg->append(reinterpret_cast<const char*>(&rta), sizeof(rta));
  AppendRaw(msg, data, len);
}

std::string StartMessage(uint16_t type, uint16_t flags, uint32_t seq) {
  nlmsghdr h{};
  h.nlmsg_type = type;
  h.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  h.nlmsg_seq = seq;
  std::string msg(reinterpret_cast<const char*>(&h), sizeof(h));
  return msg;
}

void FinishMessage(std::string* msg) {
  reinterpret_cast<nlmsghdr*>(msg->data())->nlmsg_len = static_cast<uint32_t>(msg->size());
}

std::string FormatMac(const unsigned char* b, size_t len) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < len; ++i) {
    snprintf(buf, sizeof(buf), i ? ":%02x" : "%02x", b[i]);
    out += buf;
  }
  return out;
}

}  // namespace

bool ParseIpPrefix(const std::string& text, bool require_prefix, IpPrefix* out) {
  std::string addr = text;
  int prefix = -1;
  if (size_t slash = text.find('/'); slash != std::string::npos) {
    addr = text.substr(0, slash);
    std::string p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos) {
      return false;
    }
    prefix = std::atoi(p.c_str());
  } else if (require_prefix) {
    return false;
  }
  IpPrefix r;
  if (inet_pton(AF_INET, addr.c_str(), r.bytes) == 1) {
    r.family = AF_INET;
  } else if (inet_pton(AF_INET6, addr.c_str(), r.bytes) == 1) {
    r.family = AF_INET6;
  } else {
    return false;
  }
  const int max = r.family == AF_INET ? 32 : 128;
  if (prefix > max) return false;
  r.prefix_len = prefix < 0 ? max : prefix;
  *out = r;
  return true;
}

Netlink::~Netlink() {
  if (fd_ >= 0) close(fd_);
}

Error Netlink::Open() {
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd_ < 0) return ErrnoError("netlink socket", errno);
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("bind netlink", errno);
  }
  return Error::Ok();
}

Error Netlink::Transact(std::string* msg) {
  auto* hdr = reinterpret_cast<nlmsghdr*>(msg->data());
  hdr->nlmsg_flags |= NLM_F_ACK;
  const uint32_t seq = hdr->nlmsg_seq;
  FinishMessage(msg);
  if (send(fd_, msg->data(), msg->size(), 0) < 0) return ErrnoError("netlink send", errno);
  std::string buf(65536, '\0');
  for (;;) {
    ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("netlink recv", errno);
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
      if (e->error == 0) return Error::Ok();
      return ErrnoError("netlink", -e->error);
    }
  }
}

Error Netlink::ListLinks(std::vector<LinkInfo>* links) {
  std::string msg = StartMessage(RTM_GETLINK, NLM_F_DUMP, seq_++);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  AppendRaw(&msg, &ifi, sizeof(ifi));
  FinishMessage(&msg);
  const uint32_t seq = reinterpret_cast<nlmsghdr*>(msg.data())->nlmsg_seq;
  if (send(fd_, msg.data(), msg.size(), 0) < 0) return ErrnoError("netlink send", errno);
  std::string buf(65536, '\0');
  links->clear();
  for (;;) {
    ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("netlink recv", errno);
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return Error::Ok();
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return ErrnoError("netlink dump links", -e->error);
      }
      if (h->nlmsg_type != RTM_NEWLINK) continue;
      auto* info = static_cast<ifinfomsg*>(NLMSG_DATA(h));
      LinkInfo link;
      link.index = info->ifi_index;
      link.flags = info->ifi_flags;
      int alen = static_cast<int>(IFLA_PAYLOAD(h));
      for (auto* a = IFLA_RTA(info); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        const auto* data = static_cast<const unsigned char*>(RTA_DATA(a));
        const size_t dlen = RTA_PAYLOAD(a);
        if (a->rta_type == IFLA_IFNAME) {
          link.name.assign(reinterpret_cast<const char*>(data), strnlen((const char*)data, dlen));
        } else if (a->rta_type == IFLA_ADDRESS) {
          link.mac = FormatMac(data, dlen);
        } else if (a->rta_type == IFLA_MTU && dlen >= 4) {
          std::memcpy(&link.mtu, data, 4);
        }
      }
      links->push_back(link);
    }
  }
}

Error Netlink::SetLink(int index, const std::string& new_name, uint32_t mtu, bool up) {
  std::string msg = StartMessage(RTM_NEWLINK, 0, seq_++);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  ifi.ifi_change = IFF_UP;
  ifi.ifi_flags = up ? IFF_UP : 0;
  AppendRaw(&msg, &ifi, sizeof(ifi));
  if (!new_name.empty()) AppendAttr(&msg, IFLA_IFNAME, new_name.c_str(), new_name.size() + 1);
  if (mtu != 0) AppendAttr(&msg, IFLA_MTU, &mtu, sizeof(mtu));
  return Transact(&msg);
}

Error Netlink::SetLinkAddress(int index, const unsigned char mac[6]) {
  std::string msg = StartMessage(RTM_NEWLINK, 0, seq_++);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  AppendRaw(&msg, &ifi, sizeof(ifi));
  AppendAttr(&msg, IFLA_ADDRESS, mac, 6);
  return Transact(&msg);
}

Error Netlink::AddAddress(int index, const IpPrefix& addr) {
  std::string msg = StartMessage(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq_++);
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<unsigned char>(addr.family);
  ifa.ifa_prefixlen = static_cast<unsigned char>(addr.prefix_len);
  ifa.ifa_index = static_cast<unsigned>(index);
  AppendRaw(&msg, &ifa, sizeof(ifa));
  const size_t len = addr.family == AF_INET ? 4 : 16;
  AppendAttr(&msg, IFA_LOCAL, addr.bytes, len);
  AppendAttr(&msg, IFA_ADDRESS, addr.bytes, len);
  if (addr.family == AF_INET && addr.prefix_len < 31) {
    unsigned char brd[4];
    uint32_t a;
    std::memcpy(&a, addr.bytes, 4);
    uint32_t host_mask = addr.prefix_len == 0 ? 0xffffffffu : (0xffffffffu >> addr.prefix_len);
    a |= htonl(host_mask);
    std::memcpy(brd, &a, 4);
    AppendAttr(&msg, IFA_BROADCAST, brd, 4);
  }
  return Transact(&msg);
}

Error Netlink::AddRoute(const IpPrefix& dst, const IpPrefix& gateway, int oif, uint32_t metric) {
  std::string msg = StartMessage(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq_++);
  rtmsg rt{};
  rt.rtm_family = static_cast<unsigned char>(dst.family);
  rt.rtm_dst_len = static_cast<unsigned char>(dst.prefix_len);
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = RTPROT_BOOT;
  rt.rtm_scope = gateway.family == 0 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  rt.rtm_type = RTN_UNICAST;
  AppendRaw(&msg, &rt, sizeof(rt));
  const size_t len = dst.family == AF_INET ? 4 : 16;
  if (dst.prefix_len > 0) AppendAttr(&msg, RTA_DST, dst.bytes, len);
  if (gateway.family != 0) AppendAttr(&msg, RTA_GATEWAY, gateway.bytes, len);
  if (oif > 0) AppendAttr(&msg, RTA_OIF, &oif, sizeof(oif));
  if (metric > 0) AppendAttr(&msg, RTA_PRIORITY, &metric, sizeof(metric));
  return Transact(&msg);
}

}  // namespace podvisor::agent
