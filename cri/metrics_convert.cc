#include "cri/metrics_convert.h"

#include <string>
#include <vector>

namespace podvisor::cri {
namespace {

constexpr uint64_t kNanosPerSecond = 1000000000;

struct Descriptor {
  const char* name;
  const char* help;
  runtime::v1::MetricType type;
  bool per_interface;  // an "interface" label after the base labels
};

// The base labels, as cAdvisor's: the container's (or for pod metrics the sandbox's) id, name
// and image.
const std::vector<std::string>& BaseLabels() {
  static const std::vector<std::string> kLabels = {"id", "name", "image"};
  return kLabels;
}

constexpr Descriptor kDescriptors[] = {
    {"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.",
     runtime::v1::COUNTER, false},
    {"container_memory_working_set_bytes", "Current working set in bytes.", runtime::v1::GAUGE,
     false},
    {"container_memory_usage_bytes",
     "Current memory usage in bytes, including all memory regardless of when it was accessed",
     runtime::v1::GAUGE, false},
    {"container_memory_rss", "Size of RSS in bytes.", runtime::v1::GAUGE, false},
    {"container_fs_usage_bytes",
     "Number of bytes that are consumed by the container on this filesystem.", runtime::v1::GAUGE,
     false},
    {"container_processes", "Number of processes running inside the container.", runtime::v1::GAUGE,
     false},
    {"container_last_seen", "Last time a container was seen by the exporter", runtime::v1::GAUGE,
     false},
    {"container_network_receive_bytes_total", "Cumulative count of bytes received",
     runtime::v1::COUNTER, true},
    {"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted",
     runtime::v1::COUNTER, true},
    {"container_network_receive_errors_total",
     "Cumulative count of errors encountered while receiving", runtime::v1::COUNTER, true},
    {"container_network_transmit_errors_total",
     "Cumulative count of errors encountered while transmitting", runtime::v1::COUNTER, true},
};

const Descriptor& Find(const std::string& name) {
  for (const Descriptor& d : kDescriptors) {
    if (name == d.name) return d;
  }
  return kDescriptors[0];  // every caller names one of the table
}

class MetricSink {
 public:
  MetricSink(google::protobuf::RepeatedPtrField<runtime::v1::Metric>* out, int64_t timestamp_ns,
             std::vector<std::string> base)
      : out_(out), timestamp_ns_(timestamp_ns), base_(std::move(base)) {}

  void Add(const std::string& name, uint64_t value, const std::string& interface = "") {
    const Descriptor& d = Find(name);
    runtime::v1::Metric* m = out_->Add();
    m->set_name(name);
    m->set_timestamp(timestamp_ns_);
    m->set_metric_type(d.type);
    for (const std::string& v : base_) m->add_label_values(v);
    if (d.per_interface) m->add_label_values(interface);
    m->mutable_value()->set_value(value);
  }

 private:
  google::protobuf::RepeatedPtrField<runtime::v1::Metric>* const out_;
  const int64_t timestamp_ns_;
  const std::vector<std::string> base_;
};

void ContainerMetricsOf(const ContainerStatsInfo& info, runtime::v1::ContainerMetrics* out) {
  const Container& c = info.container;
  const GuestContainerStats& s = info.stats;
  out->set_container_id(c.metadata.id);
  MetricSink sink(out->mutable_metrics(), s.timestamp_ns,
                  {c.metadata.id, c.metadata.config.name, c.metadata.image_ref});
  sink.Add("container_cpu_usage_seconds_total", s.cpu_usage_ns / kNanosPerSecond);
  sink.Add("container_memory_working_set_bytes", s.memory_working_set_bytes);
  sink.Add("container_memory_usage_bytes", s.memory_usage_bytes);
  sink.Add("container_memory_rss", s.memory_rss_bytes);
  sink.Add("container_fs_usage_bytes", s.rootfs_used_bytes);
  sink.Add("container_processes", s.pids);
  sink.Add("container_last_seen", static_cast<uint64_t>(s.timestamp_ns) / kNanosPerSecond);
}

}  // namespace

void AllMetricDescriptors(runtime::v1::ListMetricDescriptorsResponse* out) {
  for (const Descriptor& d : kDescriptors) {
    runtime::v1::MetricDescriptor* m = out->add_descriptors();
    m->set_name(d.name);
    m->set_help(d.help);
    for (const std::string& l : BaseLabels()) m->add_label_keys(l);
    if (d.per_interface) m->add_label_keys("interface");
  }
}

void ToMetrics(const SandboxStatsInfo& info, runtime::v1::PodSandboxMetrics* out) {
  const SandboxMetadata& m = info.sandbox.metadata;
  out->set_pod_sandbox_id(m.id);
  MetricSink pod(out->mutable_metrics(), info.host.timestamp_ns, {m.id, m.pod_name, ""});
  if (info.host.vm) {
    // The pod's own figures are what its VM costs the node (as PodSandboxStats reports them).
    pod.Add("container_cpu_usage_seconds_total", info.host.vm->cpu_ns / kNanosPerSecond);
    pod.Add("container_memory_working_set_bytes", info.host.vm->rss_bytes);
    pod.Add("container_memory_usage_bytes", info.host.vm->rss_bytes);
    pod.Add("container_memory_rss", info.host.vm->anon_bytes + info.host.vm->shmem_bytes);
  }
  if (info.guest) pod.Add("container_processes", info.guest->process_count);
  for (const InterfaceUsage& u : info.host.interfaces) {
    pod.Add("container_network_receive_bytes_total", u.rx_bytes, u.name);
    pod.Add("container_network_transmit_bytes_total", u.tx_bytes, u.name);
    pod.Add("container_network_receive_errors_total", u.rx_errors, u.name);
    pod.Add("container_network_transmit_errors_total", u.tx_errors, u.name);
  }
  for (const ContainerStatsInfo& c : info.containers) {
    ContainerMetricsOf(c, out->add_container_metrics());
  }
}

}  // namespace podvisor::cri
