#pragma once

#include <map>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/hypervisor.h"

namespace podvisor::testing {

// An in-memory Hypervisor for unit tests of the sandbox code: VMs are records, nothing boots.
// Tests can make the next call of a kind fail, simulate a VM dying (SimulateExit) and inspect
// what was created. Thread-safe.
class FakeHypervisor : public Hypervisor {
 public:
  absl::Status Init() override {
    absl::MutexLock lock(&mu_);
    initialised_ = true;
    return init_error_;
  }
  std::string Accelerator() const override { return "fake"; }

  absl::Status Create(const VmSpec& spec) override {
    absl::MutexLock lock(&mu_);
    ++create_calls_;
    if (!next_create_error_.ok()) return std::exchange(next_create_error_, absl::OkStatus());
    if (vms_.count(spec.id) > 0) {
      return absl::AlreadyExistsError(absl::StrCat("create VM ", spec.id, ": already exists"));
    }
    vms_[spec.id] = Vm{spec, VmState::kRunning, next_pid_++};
    last_spec_ = spec;
    if (!spec.memory_file.empty() && spec.restore_state.empty()) {
      // QEMU creates a template's RAM file.
      if (FILE* f = fopen(spec.memory_file.c_str(), "w"); f != nullptr) fclose(f);
    }
    return absl::OkStatus();
  }

  absl::Status Stop(const std::string& id, absl::Duration) override {
    absl::MutexLock lock(&mu_);
    stopped_.push_back(id);
    vms_.erase(id);
    return absl::OkStatus();
  }

  absl::Status Destroy(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    if (!next_destroy_error_.ok()) return std::exchange(next_destroy_error_, absl::OkStatus());
    destroyed_.push_back(id);
    vms_.erase(id);
    return absl::OkStatus();
  }

  absl::StatusOr<VmStatus> Status(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return VmStatus{};
    return VmStatus{it->second.state, it->second.pid};
  }

  absl::StatusOr<std::vector<VmInfo>> List() override {
    absl::MutexLock lock(&mu_);
    std::vector<VmInfo> result;
    for (const auto& [id, vm] : vms_) result.push_back({id, {vm.state, vm.pid}});
    return result;
  }

  absl::Status Pause(const std::string& id) override { return SetState(id, VmState::kPaused); }
  absl::Status Resume(const std::string& id) override { return SetState(id, VmState::kRunning); }

  absl::Status AttachDisk(const std::string& id, const VmDisk& disk) override {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return absl::NotFoundError(absl::StrCat("no VM ", id));
    it->second.spec.disks.push_back(disk);
    return absl::OkStatus();
  }

  absl::Status DetachDisk(const std::string& id, const std::string& disk_id) override {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return absl::NotFoundError(absl::StrCat("no VM ", id));
    auto& disks = it->second.spec.disks;
    for (auto d = disks.begin(); d != disks.end(); ++d) {
      if (d->id == disk_id) {
        disks.erase(d);
        return absl::OkStatus();
      }
    }
    return absl::NotFoundError(absl::StrCat("no disk ", disk_id, " in VM ", id));
  }

  absl::StatusOr<std::vector<VmDisk>> ListDisks(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return absl::NotFoundError(absl::StrCat("no VM ", id));
    return it->second.spec.disks;
  }

  void SetExitCallback(VmExitCallback callback) override {
    absl::MutexLock lock(&mu_);
    callback_ = std::move(callback);
  }

  // Writes a small state file and destroys the VM, as the real backend does.
  absl::Status SaveTemplate(const std::string& id, const std::string& state_file) override {
    absl::MutexLock lock(&mu_);
    ++save_calls_;
    if (vms_.erase(id) == 0) return absl::NotFoundError(absl::StrCat("no VM ", id));
    if (!next_save_error_.ok()) return std::exchange(next_save_error_, absl::OkStatus());
    FILE* f = fopen(state_file.c_str(), "w");
    if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", state_file));
    fputs("fake device state\n", f);
    fclose(f);
    return absl::OkStatus();
  }
  std::string Versions() const override { return versions_; }

  // --- test controls ---
  // The VM stops on its own: removed, and the exit callback runs (on the caller's thread).
  void SimulateExit(const std::string& id, const std::string& reason = "crashed") {
    VmExitCallback callback;
    {
      absl::MutexLock lock(&mu_);
      vms_.erase(id);
      callback = callback_;
    }
    if (callback) callback(VmExitEvent{id, reason});
  }
  void FailNextCreate(absl::Status status) {
    absl::MutexLock lock(&mu_);
    next_create_error_ = std::move(status);
  }
  void FailNextDestroy(absl::Status status) {
    absl::MutexLock lock(&mu_);
    next_destroy_error_ = std::move(status);
  }
  void FailInit(absl::Status status) {
    absl::MutexLock lock(&mu_);
    init_error_ = std::move(status);
  }
  // The spec a running VM was created with (plus hot-plugged disks).
  std::optional<VmSpec> SpecOf(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return std::nullopt;
    return it->second.spec;
  }
  int create_calls() {
    absl::MutexLock lock(&mu_);
    return create_calls_;
  }
  std::vector<std::string> destroyed() {
    absl::MutexLock lock(&mu_);
    return destroyed_;
  }
  std::vector<std::string> stopped() {
    absl::MutexLock lock(&mu_);
    return stopped_;
  }
  // The VM stops while nobody listens (e.g. while the daemon is down): no callback.
  void SimulateExitQuietly(const std::string& id) {
    absl::MutexLock lock(&mu_);
    vms_.erase(id);
  }
  bool Running(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    return it != vms_.end() && it->second.state == VmState::kRunning;
  }
  std::vector<std::string> RunningIds() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    for (const auto& [id, vm] : vms_) ids.push_back(id);
    return ids;
  }
  void FailNextSave(absl::Status status) {
    absl::MutexLock lock(&mu_);
    next_save_error_ = std::move(status);
  }
  int save_calls() {
    absl::MutexLock lock(&mu_);
    return save_calls_;
  }
  // What Versions() answers (part of template keys).
  void set_versions(std::string versions) { versions_ = std::move(versions); }
  // The spec of the most recent successful Create.
  VmSpec LastSpec() {
    absl::MutexLock lock(&mu_);
    return last_spec_;
  }

 private:
  struct Vm {
    VmSpec spec;
    VmState state = VmState::kRunning;
    pid_t pid = 0;
  };

  absl::Status SetState(const std::string& id, VmState state) {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) return absl::NotFoundError(absl::StrCat("no VM ", id));
    it->second.state = state;
    return absl::OkStatus();
  }

  absl::Mutex mu_;
  bool initialised_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Vm> vms_ ABSL_GUARDED_BY(mu_);
  pid_t next_pid_ ABSL_GUARDED_BY(mu_) = 1000;
  VmSpec last_spec_ ABSL_GUARDED_BY(mu_);
  int create_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> destroyed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> stopped_ ABSL_GUARDED_BY(mu_);
  absl::Status init_error_ ABSL_GUARDED_BY(mu_);
  absl::Status next_create_error_ ABSL_GUARDED_BY(mu_);
  absl::Status next_destroy_error_ ABSL_GUARDED_BY(mu_);
  absl::Status next_save_error_ ABSL_GUARDED_BY(mu_);
  int save_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string versions_ = "fake 1";
  VmExitCallback callback_ ABSL_GUARDED_BY(mu_);
};

}  // namespace podvisor::testing
