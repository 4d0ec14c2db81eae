#include "cri/metrics_endpoint.h"

#include <exception>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/metrics_registry.h"
#include "cri/vm_inventory.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"

namespace podvisor::cri {
namespace {

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void AddSample(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels,
               double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

// Gauges read from the controllers at scrape time, so they can never drift from the state.
class RuntimeCollector : public prometheus::Collectable {
 public:
  RuntimeCollector(SandboxController* sandboxes, ContainerController* containers,
                   VmTemplateStore* templates)
      : sandboxes_(sandboxes), containers_(containers), templates_(templates) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    std::vector<VmRow> vms = ListVms(*sandboxes_, /*with_memory=*/true);
    out.push_back(SandboxStates(vms));
    out.push_back(ContainerStates(vms));
    auto rss = Gauge("podvisor_vm_memory_rss_bytes", "Resident memory of each pod VM's QEMU");
    auto pss = Gauge("podvisor_vm_memory_pss_bytes",
                     "Proportional set size of each pod VM's QEMU (shared pages split)");
    auto size = Gauge("podvisor_vm_memory_size_bytes", "Guest RAM each pod VM was given");
    for (const VmRow& vm : vms) {
      if (vm.qemu_pid <= 0) continue;
      std::vector<prometheus::ClientMetric::Label> labels = {{"sandbox_id", vm.id.substr(0, 12)},
                                                             {"pod", vm.name}};
      AddSample(rss, labels, static_cast<double>(vm.rss_bytes));
      AddSample(pss, labels, static_cast<double>(vm.pss_bytes));
      AddSample(size, labels, static_cast<double>(vm.memory_mib) * 1024 * 1024);
    }
    out.push_back(std::move(rss));
    out.push_back(std::move(pss));
    out.push_back(std::move(size));
    auto ready =
        Gauge("podvisor_runtime_ready", "1 once the hypervisor is initialised and state recovered");
    AddSample(ready, {}, sandboxes_->ReadyStatus().ok() ? 1 : 0);
    out.push_back(std::move(ready));
    if (templates_ != nullptr) AddTemplates(out);
    return out;
  }

 private:
  // The template pool: shapes by state, and the tmpfs memory each ready template's RAM holds.
  void AddTemplates(std::vector<prometheus::MetricFamily>& out) const {
    std::map<std::string, int> counts;
    for (auto s : {VmTemplateStatus::State::kPending, VmTemplateStatus::State::kBuilding,
                   VmTemplateStatus::State::kReady, VmTemplateStatus::State::kFailed}) {
      counts[VmTemplateStateName(s)] = 0;
    }
    auto memory = Gauge("podvisor_template_memory_bytes",
                        "tmpfs bytes held by each ready template's RAM file");
    for (const VmTemplateStatus& t : templates_->Status()) {
      ++counts[VmTemplateStateName(t.state)];
      if (t.state != VmTemplateStatus::State::kReady) continue;
      AddSample(memory,
                {{"vcpus", absl::StrCat(t.shape.vcpus)},
                 {"memory_mib", absl::StrCat(t.shape.memory_mib)}},
                static_cast<double>(t.memory_file_bytes));
    }
    auto states = Gauge("podvisor_templates", "Template VM shapes by state");
    for (const auto& [state, n] : counts) AddSample(states, {{"state", state}}, n);
    out.push_back(std::move(states));
    out.push_back(std::move(memory));
  }

  static prometheus::MetricFamily SandboxStates(const std::vector<VmRow>& vms) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const char* state : {"ready", "notready"}) counts[{state, "vm"}] = 0;
    for (const VmRow& vm : vms) ++counts[{vm.state, vm.handler}];
    auto f = Gauge("podvisor_sandboxes", "Pod sandboxes by state and runtime handler");
    for (const auto& [key, n] : counts) {
      AddSample(f, {{"state", key.first}, {"handler", key.second}}, n);
    }
    return f;
  }

  prometheus::MetricFamily ContainerStates(const std::vector<VmRow>& vms) const {
    std::map<std::string, std::string> handler_of;
    for (const VmRow& vm : vms) handler_of[vm.id] = vm.handler;
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const char* state : {"created", "running", "exited", "unknown"}) {
      counts[{state, "vm"}] = 0;
    }
    for (const Container& c : containers_->List(ContainerFilter{})) {
      auto it = handler_of.find(c.metadata.sandbox_id);
      const std::string handler = it == handler_of.end() ? "vm" : it->second;
      ++counts[{StateName(c.status.state), handler}];
    }
    auto f = Gauge("podvisor_containers", "Containers by state and runtime handler");
    for (const auto& [key, n] : counts) {
      AddSample(f, {{"state", key.first}, {"handler", key.second}}, n);
    }
    return f;
  }

  static std::string StateName(ContainerState s) {
    switch (s) {
      case ContainerState::kCreated:
        return "created";
      case ContainerState::kRunning:
        return "running";
      case ContainerState::kExited:
        return "exited";
      default:
        return "unknown";
    }
  }

  SandboxController* const sandboxes_;
  ContainerController* const containers_;
  VmTemplateStore* const templates_;  // nullptr: templates off
};

class MetricsEndpointImpl : public MetricsEndpoint {
 public:
  MetricsEndpointImpl(std::unique_ptr<prometheus::Exposer> exposer,
                      std::shared_ptr<RuntimeCollector> collector, std::string address)
      : collector_(std::move(collector)),
        exposer_(std::move(exposer)),
        address_(std::move(address)) {}
  ~MetricsEndpointImpl() override { exposer_.reset(); }  // stop serving before the collector goes
  std::string address() const override { return address_; }

 private:
  std::shared_ptr<RuntimeCollector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address, SandboxController* sandboxes, ContainerController* containers,
    VmTemplateStore* templates) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address ", address, ": not host:port"));
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb takes "host:port" ("[v6]:port" for IPv6) as its listening_ports option.
    exposer = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", address, ": ", e.what()));
  }
  std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", address));
  }
  auto collector = std::make_shared<RuntimeCollector>(sandboxes, containers, templates);
  exposer->RegisterCollectable(metrics::Registry());
  exposer->RegisterCollectable(collector);
  const std::string bound = absl::StrCat(address.substr(0, colon), ":", ports.front());
  return std::make_unique<MetricsEndpointImpl>(std::move(exposer), std::move(collector), bound);
}

}  // namespace podvisor::cri
