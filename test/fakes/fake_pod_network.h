#pragma once

// A PodNetworkManager for sandbox controller unit tests: no netns, no CNI. Hands out
// 10.99.0.<n>/24 addresses, remembers pods, counts calls, and fails on demand.

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "network/pod_network.h"

namespace podvisor::testing {

class FakePodNetworkManager : public PodNetworkManager {
 public:
  PodNetworkReadiness Readiness() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return readiness_;
  }

  absl::StatusOr<PodNetwork> Setup(const PodNetworkRequest& request) override {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(request);
    if (!setup_error_.ok()) return setup_error_;
    PodNetwork net;
    net.sandbox_id = request.sandbox_id;
    net.netns_path = NetnsPath(request.sandbox_id);
    net.tap_name = "tap0_pv";
    int n = ++next_;
    net.mac = absl::StrCat("02:00:00:00:00:", n < 16 ? "0" : "", absl::Hex(n));
    net.mtu = 1500;
    net.ips = {{absl::StrCat("10.99.0.", n), 24, 4, "10.99.0.1"}};
    net.routes = {{"0.0.0.0/0", "10.99.0.1"}};
    net.network_name = "fake";
    pods_[request.sandbox_id] = net;
    return net;
  }

  absl::StatusOr<PodNetwork> Get(const std::string& sandbox_id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pods_.find(sandbox_id);
    if (it == pods_.end() || torn_down_.count(sandbox_id) > 0) {
      return absl::NotFoundError(absl::StrCat("pod ", sandbox_id, " has no network set up"));
    }
    return it->second;
  }

  absl::Status Check(const std::string& sandbox_id) override { return Get(sandbox_id).status(); }

  absl::Status Teardown(const std::string& sandbox_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++teardowns_;
    if (!teardown_error_.ok()) return teardown_error_;
    if (pods_.count(sandbox_id) > 0) torn_down_.insert(sandbox_id);
    return absl::OkStatus();
  }

  absl::Status Remove(const std::string& sandbox_id) override {
    if (absl::Status s = Teardown(sandbox_id); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    pods_.erase(sandbox_id);
    torn_down_.erase(sandbox_id);
    return absl::OkStatus();
  }

  std::vector<std::string> ListSandboxIds() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> ids;
    for (const auto& [id, net] : pods_) ids.push_back(id);
    return ids;
  }

  std::string NetnsPath(const std::string& sandbox_id) const override {
    return "/run/fake/netns/" + sandbox_id;
  }

  // Test controls.
  void SetReadiness(PodNetworkReadiness r) {
    std::lock_guard<std::mutex> lock(mu_);
    readiness_ = r;
  }
  void FailSetup(absl::Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    setup_error_ = s;
  }
  void FailTeardown(absl::Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    teardown_error_ = s;
  }
  std::vector<PodNetworkRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  int teardowns() const {
    std::lock_guard<std::mutex> lock(mu_);
    return teardowns_;
  }
  bool HasPod(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    return pods_.count(id) > 0;
  }

 private:
  mutable std::mutex mu_;
  PodNetworkReadiness readiness_{true, "", ""};
  absl::Status setup_error_;
  absl::Status teardown_error_;
  std::map<std::string, PodNetwork> pods_;
  std::set<std::string> torn_down_;
  std::vector<PodNetworkRequest> requests_;
  int next_ = 1;
  int teardowns_ = 0;
};

}  // namespace podvisor::testing
