#include "agent/network_setup.h"

#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>

#include "agent/log.h"
#include "agent/netlink.h"

namespace podvisor::agent {
namespace {

bool IsValidMac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2 ? mac[i] != ':' : !std::isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  return true;
}

bool IsValidIfName(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

Error ValidateNetworkSetup(const v1::SetupNetworkRequest& req) {
  if (req.interfaces_size() > 64 || req.routes_size() > 1024) {
    return Error(Code::kInvalidArgument, "too many interfaces or routes");
  }
  for (const v1::NetworkInterface& nic : req.interfaces()) {
    if (!IsValidMac(nic.mac())) return Error(Code::kInvalidArgument, "invalid MAC \"" + nic.mac() + "\"");
    if (!nic.set_mac().empty() && !IsValidMac(nic.set_mac())) {
      return Error(Code::kInvalidArgument, "invalid MAC \"" + nic.set_mac() + "\"");
    }
    if (!nic.name().empty() && !IsValidIfName(nic.name())) {
      return Error(Code::kInvalidArgument, "invalid interface name \"" + nic.name() + "\"");
    }
    if (nic.mtu() != 0 && (nic.mtu() < 68 || nic.mtu() > 65535)) {
      return Error(Code::kInvalidArgument, "invalid MTU " + std::to_string(nic.mtu()));
    }
    if (nic.addresses_size() > 64) return Error(Code::kInvalidArgument, "too many addresses");
    for (const v1::IpAddress& a : nic.addresses()) {
      IpPrefix p;
      if (!ParseIpPrefix(a.cidr(), true, &p)) {
        return Error(Code::kInvalidArgument, "invalid address \"" + a.cidr() + "\"");
      }
    }
  }
  for (const v1::Route& r : req.routes()) {
    IpPrefix dst, gw;
    if (!r.destination().empty() && !ParseIpPrefix(r.destination(), true, &dst)) {
      return Error(Code::kInvalidArgument, "invalid route destination \"" + r.destination() + "\"");
    }
    if (!r.gateway().empty() && !ParseIpPrefix(r.gateway(), false, &gw)) {
      return Error(Code::kInvalidArgument, "invalid gateway \"" + r.gateway() + "\"");
    }
    if (r.destination().empty() && r.gateway().empty()) {
      return Error(Code::kInvalidArgument, "route needs a destination or a gateway");
    }
    if (!r.destination().empty() && !r.gateway().empty() && dst.family != gw.family) {
      return Error(Code::kInvalidArgument, "route mixes IPv4 and IPv6");
    }
    if (!r.device().empty() && !IsValidIfName(r.device())) {
      return Error(Code::kInvalidArgument, "invalid route device \"" + r.device() + "\"");
    }
  }
  return Error::Ok();
}

Error ApplyNetworkSetup(const AgentOptions& options, const v1::SetupNetworkRequest& req) {
  Error err = ValidateNetworkSetup(req);
  if (!err.ok()) return err;
  if (!options.pid1 && !options.allow_network) {
    return Error(Code::kFailedPrecondition,
                 "refusing to change the host's network: --no-pid1 without --allow-network");
  }
  Netlink nl;
  if (err = nl.Open(); !err.ok()) return err;
  std::vector<LinkInfo> links;
  if (err = nl.ListLinks(&links); !err.ok()) return err;
  if (req.loopback_up()) {
    for (const LinkInfo& l : links) {
      if (l.name != "lo") continue;
      if ((err = nl.SetLink(l.index, "", 0, true)); !err.ok()) return err.With("bring lo up");
    }
  }
  for (const v1::NetworkInterface& nic : req.interfaces()) {
    const std::string mac = Lower(nic.mac());
    auto it = std::find_if(links.begin(), links.end(), [&](const LinkInfo& l) { return l.mac == mac; });
    if (it == links.end()) return Error(Code::kNotFound, "no interface with MAC " + mac);
    const std::string ctx = "interface " + mac;
    if (!nic.set_mac().empty() && Lower(nic.set_mac()) != mac) {
      unsigned char bytes[6];
      for (int i = 0; i < 6; ++i) {
        bytes[i] = static_cast<unsigned char>(std::stoi(nic.set_mac().substr(i * 3, 2), nullptr, 16));
      }
      // Down first: not every driver takes a new address while up.
      if ((err = nl.SetLink(it->index, "", 0, false)); !err.ok()) return err.With(ctx);
      if ((err = nl.SetLinkAddress(it->index, bytes)); !err.ok()) {
        return err.With(ctx + ": set MAC " + nic.set_mac());
      }
    }
    if (!nic.name().empty() && nic.name() != it->name) {
      if ((err = nl.SetLink(it->index, "", 0, false)); !err.ok()) return err.With(ctx);
      if ((err = nl.SetLink(it->index, nic.name(), 0, false)); !err.ok()) {
        return err.With(ctx + ": rename to " + nic.name());
      }
    }
    if ((err = nl.SetLink(it->index, "", nic.mtu(), nic.up())); !err.ok()) return err.With(ctx);
    for (const v1::IpAddress& a : nic.addresses()) {
      IpPrefix p;
      ParseIpPrefix(a.cidr(), true, &p);
      if ((err = nl.AddAddress(it->index, p)); !err.ok()) return err.With(ctx + ": " + a.cidr());
    }
  }
  for (const v1::Route& r : req.routes()) {
    IpPrefix dst, gw;
    if (!r.gateway().empty()) ParseIpPrefix(r.gateway(), false, &gw);
    if (!r.destination().empty()) {
      ParseIpPrefix(r.destination(), true, &dst);
    } else {
      dst.family = gw.family;  // default route, prefix 0
    }
    int oif = 0;
    if (!r.device().empty()) {
      oif = static_cast<int>(if_nametoindex(r.device().c_str()));
      if (oif == 0) return Error(Code::kNotFound, "route device " + r.device() + " not found");
    }
    const std::string what = "route " + (r.destination().empty() ? "default" : r.destination());
    if ((err = nl.AddRoute(dst, gw, oif, r.metric())); !err.ok()) return err.With(what);
  }
  AgentLog(LogSeverity::kInfo, "network set up: " + std::to_string(req.interfaces_size()) +
                                   " interfaces, " + std::to_string(req.routes_size()) + " routes");
  return Error::Ok();
}

}  // namespace podvisor::agent
