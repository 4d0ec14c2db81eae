#pragma once

// CRI-provided metrics (ListMetricDescriptors, ListPodSandboxMetrics): the figures of the stats
// RPCs under the names cAdvisor gives them, for kubelet's /metrics/cadvisor when cAdvisor cannot
// see the containers (they run inside a VM). docs/metrics.md lists them.

#include "pod-sandbox/container_controller.h"
#include "runtime/v1/api.pb.h"

namespace podvisor::cri {

// Every metric ListPodSandboxMetrics reports, with its label keys.
void AllMetricDescriptors(runtime::v1::ListMetricDescriptorsResponse* out);

// One pod's metrics: the pod's own (what its VM costs the node, its network) and each container's.
// Each metric's label_values match its descriptor's label_keys.
void ToMetrics(const SandboxStatsInfo& info, runtime::v1::PodSandboxMetrics* out);

}  // namespace podvisor::cri
