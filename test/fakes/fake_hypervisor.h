#pragma once

// A Hypervisor for unit tests: VMs are entries in a map; exits are simulated.

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hypervisor/hypervisor.h"

namespace podvisor::testing {

class FakeHypervisor : public Hypervisor {
 public:
  absl::Status create_result;  // returned by Create when not OK

  absl::Status Init() override { return absl::OkStatus(); }
  std::string Accelerator() const override { return "tcg"; }

  absl::Status Create(const VmSpec& spec) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!create_result.ok()) return create_result;
    if (vms_.contains(spec.id)) return absl::AlreadyExistsError(spec.id);
    vms_[spec.id] = VmStatus{VmState::kRunning, next_pid_++};
    specs_.push_back(spec);
    return absl::OkStatus();
  }
  absl::Status Stop(const std::string& id, absl::Duration) override { return Destroy(id); }
  absl::Status Destroy(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    vms_.erase(id);
    return absl::OkStatus();
  }
  absl::StatusOr<VmStatus> Status(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return VmStatus{};
    return it->second;
  }
  absl::StatusOr<std::vector<VmInfo>> List() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<VmInfo> out;
    for (const auto& [id, st] : vms_) out.push_back({id, st});
    return out;
  }
  absl::Status Pause(const std::string& id) override { return SetState(id, VmState::kPaused); }
  absl::Status Resume(const std::string& id) override { return SetState(id, VmState::kRunning); }
  absl::Status AttachDisk(const std::string& id, const VmDisk& disk) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!vms_.contains(id)) return absl::NotFoundError(id);
    disks_[id].insert(disk.id);
    return absl::OkStatus();
  }
  absl::Status DetachDisk(const std::string& id, const std::string& disk_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    disks_[id].erase(disk_id);
    return absl::OkStatus();
  }
  void SetExitCallback(VmExitCallback callback) override {
    std::lock_guard<std::mutex> lock(mu_);
    callback_ = std::move(callback);
  }

  // The VM stops on its own and the exit callback fires.
  void SimulateExit(const std::string& id, const std::string& reason) {
    VmExitCallback cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      vms_.erase(id);
      cb = callback_;
    }
    if (cb) cb(VmExitEvent{id, reason});
  }
  // The VM stops while nobody listens (e.g. while the daemon is down).
  void SimulateExitQuietly(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    vms_.erase(id);
  }
  bool Running(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = vms_.find(id);
    return it != vms_.end() && it->second.state == VmState::kRunning;
  }
  std::set<std::string> RunningIds() {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> out;
    for (const auto& [id, st] : vms_) out.insert(id);
    return out;
  }
  VmSpec LastSpec() {
    std::lock_guard<std::mutex> lock(mu_);
    return specs_.empty() ? VmSpec{} : specs_.back();
  }
  std::set<std::string> Disks(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return disks_[id];
  }

 private:
  absl::Status SetState(const std::string& id, VmState state) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return absl::NotFoundError(id);
    it->second.state = state;
    return absl::OkStatus();
  }

  std::mutex mu_;
  std::map<std::string, VmStatus> vms_;
  std::map<std::string, std::set<std::string>> disks_;
  std::vector<VmSpec> specs_;
  VmExitCallback callback_;
  pid_t next_pid_ = 1000;
};

}  // namespace podvisor::testing
