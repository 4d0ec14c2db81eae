#include "network/netlink.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor::network {
namespace {

// Builds one netlink request: header, family header, then (nested) attributes.
class Request {
 public:
  Request(uint16_t type, uint16_t flags) {
    buf_.resize(NLMSG_HDRLEN);
    Header()->nlmsg_type = type;
    Header()->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    Header()->nlmsg_seq = 1;
  }

  template <typename T>
  void AppendStruct(const T& value) {
    Append(&value, sizeof(value));
  }

  void Attr(uint16_t type, const void* data, size_t len) {
    rtattr rta{};
    rta.rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
    rta.rta_type = type;
    Append(&rta, sizeof(rta));
    Append(data, len);
  }
  void AttrString(uint16_t type, const char* s) { Attr(type, s, std::strlen(s) + 1); }

  // Returns the offset to pass to EndNest.
  size_t BeginNest(uint16_t type) {
    size_t at = buf_.size();
    Attr(type, nullptr, 0);
    return at;
  }
  void EndNest(size_t at) {
    reinterpret_cast<rtattr*>(buf_.data() + at)->rta_len = static_cast<uint16_t>(buf_.size() - at);
  }

  // Sends the request and waits for the kernel's ack; returns the errno it reports (0: ok).
  absl::StatusOr<int> Exchange() {
    Header()->nlmsg_len = static_cast<uint32_t>(buf_.size());
    int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return ErrnoStatus("netlink socket", errno);
    absl::Cleanup close_fd = [fd] { ::close(fd); };
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd, buf_.data(), buf_.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
                 sizeof(kernel)) < 0) {
      return ErrnoStatus("netlink send", errno);
    }
    char answer[8192];
    while (true) {
      ssize_t n = ::recv(fd, answer, sizeof(answer), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("netlink receive", errno);
      for (auto* h = reinterpret_cast<nlmsghdr*>(answer); NLMSG_OK(h, static_cast<size_t>(n));
           h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_ERROR) {
          return -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        }
      }
    }
  }

 private:
  nlmsghdr* Header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  void Append(const void* data, size_t len) {
    size_t at = buf_.size();
    buf_.resize(at + NLMSG_ALIGN(len));  // RTA_ALIGN == NLMSG_ALIGN (4 bytes)
    if (len > 0) std::memcpy(buf_.data() + at, data, len);
  }

  std::vector<char> buf_;
};

tcmsg IngressTcmsg(int ifindex) {
  tcmsg tc{};
  tc.tcm_family = AF_UNSPEC;
  tc.tcm_ifindex = ifindex;
  tc.tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0);  // ffff:
  tc.tcm_parent = TC_H_INGRESS;
  return tc;
}

absl::Status Check(absl::StatusOr<int> err, absl::string_view what, int ok_errno = 0) {
  if (!err.ok())
    return absl::Status(err.status().code(), absl::StrCat(what, ": ", err.status().message()));
  if (*err == 0 || *err == ok_errno) return absl::OkStatus();
  return ErrnoStatus(what, *err);
}

}  // namespace

absl::Status NetlinkDeleteLink(int ifindex) {
  Request req(RTM_DELLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  req.AppendStruct(ifi);
  return Check(req.Exchange(), absl::StrCat("delete link ", ifindex), ENODEV);
}

absl::Status NetlinkAddIngressQdisc(int ifindex) {
  Request req(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL);
  tcmsg tc = IngressTcmsg(ifindex);
  req.AppendStruct(tc);
  req.AttrString(TCA_KIND, "ingress");
  return Check(req.Exchange(), absl::StrCat("add ingress qdisc to link ", ifindex));
}

absl::Status NetlinkDeleteIngressQdisc(int ifindex) {
  Request req(RTM_DELQDISC, 0);
  tcmsg tc = IngressTcmsg(ifindex);
  req.AppendStruct(tc);
  req.AttrString(TCA_KIND, "ingress");
  absl::StatusOr<int> err = req.Exchange();
  // No qdisc: EINVAL or ENOENT depending on the kernel; no link: ENODEV.
  if (err.ok() && (*err == EINVAL || *err == ENOENT || *err == ENODEV)) return absl::OkStatus();
  return Check(err, absl::StrCat("delete ingress qdisc of link ", ifindex));
}

absl::Status NetlinkAddRedirectFilter(int from_ifindex, int to_ifindex) {
  Request req(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
  tcmsg tc{};
  tc.tcm_family = AF_UNSPEC;
  tc.tcm_ifindex = from_ifindex;
  tc.tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0);           // parent ffff:
  tc.tcm_info = TC_H_MAKE(1u << 16, htons(ETH_P_ALL));  // prio 1, protocol all
  req.AppendStruct(tc);
  req.AttrString(TCA_KIND, "u32");
  size_t options = req.BeginNest(TCA_OPTIONS);
  // One key matching 0 against mask 0 at offset 0: every frame.
  alignas(tc_u32_sel) char sel_buf[sizeof(tc_u32_sel) + sizeof(tc_u32_key)] = {};
  auto* sel = reinterpret_cast<tc_u32_sel*>(sel_buf);
  sel->flags = TC_U32_TERMINAL;
  sel->nkeys = 1;
  req.Attr(TCA_U32_SEL, sel_buf, sizeof(sel_buf));
  size_t actions = req.BeginNest(TCA_U32_ACT);
  size_t first = req.BeginNest(1);  // action order 1
  req.AttrString(TCA_ACT_KIND, "mirred");
  size_t act_options = req.BeginNest(TCA_ACT_OPTIONS);
  tc_mirred mirred{};
  mirred.action = TC_ACT_STOLEN;
  mirred.eaction = TCA_EGRESS_REDIR;
  mirred.ifindex = static_cast<uint32_t>(to_ifindex);
  req.Attr(TCA_MIRRED_PARMS, &mirred, sizeof(mirred));
  req.EndNest(act_options);
  req.EndNest(first);
  req.EndNest(actions);
  req.EndNest(options);
  return Check(req.Exchange(),
               absl::StrCat("redirect link ", from_ifindex, " to link ", to_ifindex));
}

}  // namespace podvisor::network
