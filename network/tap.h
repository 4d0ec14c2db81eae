#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace podvisor::network {

// An interface as seen from inside its namespace.
struct LinkInfo {
  std::string mac;  // "aa:bb:cc:dd:ee:ff"
  int mtu = 0;
  int index = 0;
};

// Reads a link's MAC, MTU and index. Must run inside the link's namespace (see RunInNetns).
absl::StatusOr<LinkInfo> GetLinkInfo(const std::string& name);

// In the namespace at `netns_path`: creates the persistent tap `tap_name` with `ifname`'s MTU,
// brings it up, and redirects every frame arriving on either device to the other with tc
// (ingress qdisc + u32 match-all + mirred egress redirect, set over rtnetlink), so the VM behind
// the tap owns
// `ifname`'s address while what CNI configured stays untouched. Returns `ifname`'s link info
// (its MAC is the one the VM's NIC must use). Undoes itself on failure.
absl::StatusOr<LinkInfo> AttachTap(const std::string& netns_path, const std::string& ifname,
                                   const std::string& tap_name);

// In the namespace at `netns_path`: creates the persistent tap `tap_name`, up, joined to
// nothing. A template VM's NIC sits on one (a clone needs the same devices as its template; what
// the template's NIC was connected to does not matter).
absl::Status CreateLoneTap(const std::string& netns_path, const std::string& tap_name);

// Removes the redirect and the tap. Missing pieces (or a missing namespace) are not errors.
absl::Status DetachTap(const std::string& netns_path, const std::string& ifname,
                       const std::string& tap_name);

}  // namespace podvisor::network
