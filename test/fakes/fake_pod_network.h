#pragma once

// A PodNetworkManager for unit tests: hands out addresses from 10.99.0.0/24 and records calls.

#include <map>
#include <mutex>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "network/pod_network.h"

namespace podvisor::testing {

class FakePodNetworkManager : public PodNetworkManager {
 public:
  absl::Status setup_result;        // returned by Setup when not OK
  std::set<std::string> live;       // sandboxes set up and not removed
  std::set<std::string> torn_down;  // sandboxes Teardown was called for
  std::vector<PodNetworkRequest> requests;

  PodNetworkReadiness Readiness() const override { return {true, "", ""}; }

  absl::StatusOr<PodNetwork> Setup(const PodNetworkRequest& request) override {
    std::lock_guard<std::mutex> lock(mu_);
    requests.push_back(request);
    if (!setup_result.ok()) return setup_result;
    PodNetwork net;
    net.sandbox_id = request.sandbox_id;
    net.netns_path = NetnsPath(request.sandbox_id);
    net.tap_name = "tap0_pv";
    net.mac = "0a:58:0a:63:00:02";
    net.mtu = 1500;
    net.ips.push_back({absl::StrCat("10.99.0.", ++next_host_), 24, 4, "10.99.0.1"});
    net.routes.push_back({"0.0.0.0/0", "10.99.0.1"});
    live.insert(request.sandbox_id);
    nets_[request.sandbox_id] = net;
    return net;
  }
  absl::StatusOr<PodNetwork> Get(const std::string& id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nets_.find(id);
    if (it == nets_.end()) return absl::NotFoundError(id);
    return it->second;
  }
  absl::Status Check(const std::string&) override { return absl::OkStatus(); }
  absl::Status Teardown(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    torn_down.insert(id);
    return absl::OkStatus();
  }
  absl::Status Remove(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    torn_down.insert(id);
    live.erase(id);
    nets_.erase(id);
    return absl::OkStatus();
  }
  std::vector<std::string> ListSandboxIds() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return {live.begin(), live.end()};
  }
  std::string NetnsPath(const std::string& id) const override { return "/run/fake-netns/" + id; }

 private:
  mutable std::mutex mu_;
  int next_host_ = 1;
  std::map<std::string, PodNetwork> nets_;
};

}  // namespace podvisor::testing
