#pragma once

// Pod networking: one network namespace per pod, set up by the node's CNI plugins, with a tap
// device inside it that the pod's VM uses as its NIC. The tap and the CNI interface (eth0) are
// joined by tc mirred redirects in both directions, so the VM takes over eth0's IP and MAC while
// everything CNI configured stays as it was. See docs/networking.md.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config.h"

namespace podvisor {

// A CRI port mapping (hostPort).
struct PodPortMapping {
  std::string protocol = "tcp";  // tcp | udp | sctp
  int32_t container_port = 0;
  int32_t host_port = 0;  // 0: no host port
  std::string host_ip;    // empty: all addresses
};

// The CRI DNSConfig, handed to CNI plugins that declare the "dns" capability.
struct PodDnsConfig {
  std::vector<std::string> servers;
  std::vector<std::string> searches;
  std::vector<std::string> options;
};

// What RunPodSandbox knows about the pod when it sets up its network.
struct PodNetworkRequest {
  std::string sandbox_id;
  std::string pod_name;
  std::string pod_namespace;
  std::string pod_uid;
  std::vector<PodPortMapping> port_mappings;
  PodDnsConfig dns;
};

struct PodIp {
  std::string address;  // "10.88.0.5" / "fd00::5", no prefix
  int prefix_length = 0;
  int family = 4;       // 4 | 6
  std::string gateway;  // may be empty

  // "10.88.0.5/16": the form the agent's IpAddress.cidr takes.
  std::string Cidr() const { return address + "/" + std::to_string(prefix_length); }
};

struct PodRoute {
  std::string destination;  // CIDR, "0.0.0.0/0" for a default route
  std::string gateway;      // empty: on-link
};

// The DNS settings CNI returned (often empty; the CRI DNSConfig stays the pod's resolv.conf).
struct PodDns {
  std::vector<std::string> nameservers;
  std::string domain;
  std::vector<std::string> search;
  std::vector<std::string> options;
};

// A pod's network as set up: what the hypervisor needs for the VM's NIC (netns_path, tap_name,
// mac) and what the guest agent needs to configure the guest interface (ips, routes, mtu, dns).
struct PodNetwork {
  std::string sandbox_id;
  std::string netns_path;               // bind-mounted netns file
  std::string interface_name = "eth0";  // the CNI interface inside the netns
  std::string tap_name;                 // the tap inside the netns; open it with OpenTap
  std::string mac;                      // the VM NIC's MAC: the CNI interface's
  int mtu = 0;                          // MTU for the guest interface (and the tap)
  std::vector<PodIp> ips;               // pod IPs, primary first (IPv4 before IPv6)
  std::vector<PodRoute> routes;         // gateways filled in from the IP of the same family
  PodDns dns;
  std::string network_name;  // the CNI network (conflist "name")

  // The primary IP (ips[0].address) or "" — PodSandboxStatus.network.ip; the rest are
  // additional_ips.
  std::string PrimaryIp() const { return ips.empty() ? "" : ips[0].address; }
  std::vector<std::string> AdditionalIps() const;
};

// NetworkReady for the CRI Status call.
struct PodNetworkReadiness {
  bool ready = false;
  std::string reason;  // "NetworkPluginNotReady" when not ready
  std::string
      message;  // why, e.g. "no valid CNI network config: no .conflist ... in /etc/cni/net.d"
};

// Sets up and tears down pod networks. Thread-safe for different sandboxes; calls for the same
// sandbox must be serialised by the caller (the sandbox controller holds a per-pod lock).
class PodNetworkManager {
 public:
  virtual ~PodNetworkManager() = default;

  // Whether a pod network can be set up now: a valid CNI config exists and its plugins are
  // installed. Reads the conf dir on each call, so a config added later is picked up.
  virtual PodNetworkReadiness Readiness() const = 0;

  // Creates the pod's netns, runs CNI ADD, and attaches the tap. The CNI result is cached
  // durably under root_dir so Teardown works after a restart. On failure everything is undone
  // (CNI DEL, netns removed, cache removed) and the error says which step failed:
  // FAILED_PRECONDITION when there is no usable CNI config (the network is not ready),
  // ALREADY_EXISTS when the sandbox still has a netns (Remove it first), the plugin's error
  // otherwise.
  virtual absl::StatusOr<PodNetwork> Setup(const PodNetworkRequest& request) = 0;

  // The network of a pod set up earlier (after a restart too), from the cache. NOT_FOUND if none.
  virtual absl::StatusOr<PodNetwork> Get(const std::string& sandbox_id) const = 0;

  // CNI CHECK against the cached result (no-op for configs older than 0.4.0).
  virtual absl::Status Check(const std::string& sandbox_id) = 0;

  // StopPodSandbox: removes the tap and runs CNI DEL with the cached config and result.
  // Idempotent: a second call, or a call for an unknown sandbox, succeeds. The netns stays.
  virtual absl::Status Teardown(const std::string& sandbox_id) = 0;

  // RemovePodSandbox: Teardown if not done yet, then removes the netns and the cache. Idempotent.
  virtual absl::Status Remove(const std::string& sandbox_id) = 0;

  // Sandboxes with network state on this node (a cache entry or a netns file), torn down or
  // not: for the controller to reconcile after a restart (Remove those without a record).
  virtual std::vector<std::string> ListSandboxIds() const = 0;

  // Path of the pod's netns file (whether or not it exists).
  virtual std::string NetnsPath(const std::string& sandbox_id) const = 0;
};

struct PodNetworkOptions {
  CniConfig cni;          // conf_dir and bin_dirs
  std::string netns_dir;  // bind-mounted netns files: <state_dir>/netns
  std::string cache_dir;  // cached CNI results: <root_dir>/network
  // The VM's tap in each netns; empty: no tap (the host handler's pods use the CNI interface
  // directly, and PodNetwork::tap_name is empty).
  std::string tap_name = "tap0_pv";
  std::string interface_name = "eth0";
  int64_t plugin_timeout_seconds = 60;
};

// Options from the daemon config: netns under state_dir, cache under root_dir.
PodNetworkOptions PodNetworkOptionsFromConfig(const Config& config);

// The CNI implementation. Creates the directories it needs.
absl::StatusOr<std::unique_ptr<PodNetworkManager>> NewCniPodNetworkManager(
    PodNetworkOptions options);

// Opens the pod's tap for the VM's NIC: a tap file descriptor (O_CLOEXEC, IFF_TAP|IFF_NO_PI and
// IFF_VNET_HDR when asked) attached to `tap_name` in the netns at `netns_path`. The caller owns
// the fd (pass it to QEMU as `-netdev tap,fd=N`); the tap itself outlives it.
absl::StatusOr<int> OpenTap(const std::string& netns_path, const std::string& tap_name,
                            bool vnet_hdr = true);

// The CRI NamespaceMode values of namespace_options.network.
enum class PodNetworkMode { kPod = 0, kContainer = 1, kNode = 2, kTarget = 3 };

// Pods run in VMs and cannot share the node's network namespace: INVALID_ARGUMENT naming
// linux.security_context.namespace_options.network=NODE for kNode; OK for kPod (and CONTAINER,
// which means the pod's own namespace for a sandbox); TARGET is rejected too.
absl::Status ValidatePodNetworkMode(PodNetworkMode mode);

}  // namespace podvisor
