#pragma once

// A minimal rtnetlink client: the guest has no `ip` binary, so the agent configures links,
// addresses and routes itself.

#include <cstdint>
#include <string>
#include <vector>

#include "agent/result.h"

namespace podvisor::agent {

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string mac;  // "52:54:00:12:34:56", lower case; empty for links without one
  unsigned flags = 0;
  uint32_t mtu = 0;
};

// A parsed "addr/prefix" or bare address (prefix = full length).
struct IpPrefix {
  int family = 0;  // AF_INET or AF_INET6
  unsigned char bytes[16] = {};
  int prefix_len = 0;
};

bool ParseIpPrefix(const std::string& text, bool require_prefix, IpPrefix* out);

class Netlink {
 public:
  Netlink() = default;
  ~Netlink();
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  Error Open();
  Error ListLinks(std::vector<LinkInfo>* links);
  // Changes what is given: new_name (link must be down), mtu (0: keep), up state.
  Error SetLink(int index, const std::string& new_name, uint32_t mtu, bool up);
  // Sets the link's hardware address (6 bytes).
  Error SetLinkAddress(int index, const unsigned char mac[6]);
  Error AddAddress(int index, const IpPrefix& addr);
  // dst.prefix_len == 0 means a default route; gateway.family == 0 means on-link.
  Error AddRoute(const IpPrefix& dst, const IpPrefix& gateway, int oif, uint32_t metric);

 private:
  Error Transact(std::string* request);  // sends, waits for the ACK

  int fd_ = -1;
  uint32_t seq_ = 1;
};

}  // namespace podvisor::agent
