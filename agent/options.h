#pragma once

#include <string>

namespace podvisor::agent {

// How the agent runs: as the guest's PID 1, or as an ordinary host process for tests.
struct AgentOptions {
  bool pid1 = true;           // false (--no-pid1): no mounts, modules, clock, hostname, power-off
  bool allow_network = false; // --allow-network: SetupNetwork in --no-pid1 mode (own netns!)
  std::string root = "";      // prefix for files the agent writes (/etc/...); "" is "/"
  std::string channel;        // "" finds the virtio port; else see OpenChannel
  std::string crun = "/usr/bin/crun";
  std::string state_dir = "/run/podvisor";  // bundles, crun state
  std::string module_list = "/lib/modules/load-order";
  std::string version;        // reported in the handshake
};

}  // namespace podvisor::agent
