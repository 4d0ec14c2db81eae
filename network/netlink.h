#pragma once

// The few rtnetlink requests pod networking makes, sent from the calling thread's network
// namespace (use RunInNetns): deleting a link and the tc ingress qdisc + u32 mirred redirect that
// joins the VM's tap to the CNI interface. Equivalent to
//   tc qdisc add dev <from> ingress
//   tc filter add dev <from> parent ffff: protocol all u32 match u8 0 0
//       action mirred egress redirect dev <to>   (one command)
// without forking tc (which costs ~10 ms a call on a busy host).

#include "absl/status/status.h"

namespace podvisor::network {

// RTM_DELLINK. A missing link is not an error.
absl::Status NetlinkDeleteLink(int ifindex);

// Adds the ingress qdisc (handle ffff:) to `ifindex`.
absl::Status NetlinkAddIngressQdisc(int ifindex);

// Removes the ingress qdisc (and so its filters). A missing qdisc is not an error.
absl::Status NetlinkDeleteIngressQdisc(int ifindex);

// Adds to `from_ifindex`'s ingress a match-all u32 filter whose action redirects every frame
// to the egress of `to_ifindex` (mirred, stolen).
absl::Status NetlinkAddRedirectFilter(int from_ifindex, int to_ifindex);

}  // namespace podvisor::network
