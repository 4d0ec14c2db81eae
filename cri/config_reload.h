#pragma once

// What a configuration reload (SIGHUP) may change while podvisord serves, and what needs a
// restart. Pure functions over two configurations.

#include <string>
#include <vector>

#include "common/config.h"

namespace podvisor::cri {

// The keys applied live: log_level, registry.hosts (mirrors, TLS, plain HTTP), metrics.address.
bool IsLiveKey(const std::string& dotted_key);

// Dotted keys whose values differ between `a` and `b` (leaves only, e.g. "hypervisor.accel",
// "registry.hosts.docker.io.mirrors"), sorted.
std::vector<std::string> ChangedKeys(const Config& a, const Config& b);

// The merge of `running` and `next` that takes effect now: `next`'s live keys, `running`'s others.
Config ApplyLiveKeys(const Config& running, const Config& next);

}  // namespace podvisor::cri
