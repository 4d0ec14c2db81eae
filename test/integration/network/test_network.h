#pragma once

// A private CNI network for one test process: its own conf dir, bridge, subnet and host-local
// data dir, so tests never touch the node's CNI config; the bridge is deleted afterwards.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "network/pod_network.h"
#include "nlohmann/json.hpp"
#include "test/support/temp_dir.h"

namespace podvisor::testing {

class TestNetwork {
 public:
  TestNetwork();
  ~TestNetwork();  // deletes the bridge, restores ip_forward / IPv6 forwarding

  // Writes the conflist: bridge (+ `extra_plugins`) with an MTU of 1400, host-local IPAM in
  // 10.213.<n>.0/24, portmap, `tail_plugins` and loopback.
  // With `dual_stack`, host-local also hands out an IPv6 address from fd00:213:<n>::/64.
  void WriteConflist(const nlohmann::json& tail_plugins = nlohmann::json::array(),
                     bool dual_stack = false);

  PodNetworkOptions Options() const;
  std::unique_ptr<PodNetworkManager> NewManager() const;

  const std::string& bridge() const { return bridge_; }
  const std::string& gateway() const { return gateway_; }
  const std::string& subnet() const { return subnet_; }
  const std::string& subnet6() const { return subnet6_; }
  std::string ipam_dir() const { return dir_.Join("ipam"); }
  std::string record_file() const { return dir_.Join("calls.jsonl"); }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::string bridge_;
  std::string subnet_;
  std::string subnet6_;
  std::vector<std::pair<std::string, std::string>> saved_sysctls_;
  std::string gateway_;
};

// IP addresses host-local holds for the test network.
int AllocatedIps(const TestNetwork& net);

}  // namespace podvisor::testing
