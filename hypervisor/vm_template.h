#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hypervisor/hypervisor.h"

namespace podvisor {

// The VM shape a template is built for; kernel, initrd and machine options are the store's.
struct VmShape {
  uint32_t vcpus = 1;
  uint64_t memory_mib = 256;
};

// A template ready to be cloned: RAM image (read-only, mapped privately by every clone) and the
// device state saved with x-ignore-shared.
struct VmTemplate {
  std::string key;  // hex digest of everything the saved state depends on
  VmShape shape;
  std::string memory_file;  // <dir>/<key>/ram
  std::string state_file;   // <dir>/<key>/state
  // The MAC of the template's NIC: migrated device state, so every clone's guest NIC starts
  // with it whatever the clone's command line says (the agent then sets the pod's MAC).
  std::string mac;
};

// What the store knows of one configured shape, for podvisorctl and the metrics.
struct VmTemplateStatus {
  enum class State { kPending, kBuilding, kReady, kFailed };
  VmShape shape;
  State state = State::kPending;
  std::string key;                 // set once the shape's key is known (the first build pass)
  std::string last_error;          // the last failed build's error (kFailed)
  absl::Time built_at;             // when the ready template was built or found (kReady)
  double build_seconds = 0;        // the last build's duration; 0 for a template found on disk
  uint64_t memory_file_bytes = 0;  // tmpfs bytes its RAM file holds (kReady)
  uint64_t clones = 0;             // pods given this shape's template since the daemon started
};

const char* VmTemplateStateName(VmTemplateStatus::State state);

// The MAC every template NIC has.
inline constexpr char kTemplateMac[] = "52:54:00:7e:e0:01";

struct VmTemplateOptions {
  // Where templates live, one directory per key. Must be on tmpfs: clones map the RAM file.
  std::string dir;
  std::string kernel;
  std::string initrd;
  // Shapes to build, in this order. Pods are cloned from the template with their vCPU count and
  // the smallest memory size at least theirs (docs/hypervisor.md, "Sizing").
  std::vector<VmShape> shapes;
  absl::Duration boot_timeout = absl::Seconds(60);
  // Makes the template VM's NIC: a tap (in a network namespace of its own) under `build_dir`.
  // The clone's NIC replaces it; a template needs one only so that the device sets match.
  std::function<absl::StatusOr<VmNic>(const std::string& build_dir)> make_nic;
  // Undoes make_nic (also called after a failed make_nic).
  std::function<void(const std::string& build_dir)> remove_nic;
  // Returns once the guest agent of the booted template answers on `agent_socket`, with the
  // connection closed again: each clone's host connects afresh.
  std::function<absl::Status(const std::string& agent_socket, absl::Duration timeout)> wait_ready;
};

// The templates of one daemon: found on disk, built in the background at Start and again when
// the guest image changes, looked up by RunPodSandbox. A pod with no ready template boots cold.
// Thread-safe.
class VmTemplateStore {
 public:
  VmTemplateStore(Hypervisor* hypervisor, VmTemplateOptions options);
  ~VmTemplateStore();  // stops the builder (a build in progress is finished first)
  VmTemplateStore(const VmTemplateStore&) = delete;
  VmTemplateStore& operator=(const VmTemplateStore&) = delete;

  // Starts the builder thread; it builds what is missing, then waits for a guest image change.
  void Start();

  // Builds every missing template for the current guest image on the caller's thread, and
  // removes templates of older images. The first error is returned; other shapes are still built.
  absl::Status BuildAll();

  // The ready template for a pod of this size, or nullopt (boot cold). Notices a guest image that
  // changed since the templates were built: answers nullopt and wakes the builder.
  std::optional<VmTemplate> Find(uint32_t vcpus, uint64_t memory_mib);

  // Every configured shape with its state, in configuration order.
  std::vector<VmTemplateStatus> Status();

 private:
  struct ImageStamp {
    std::string kernel;  // "<dev> <ino> <size> <mtime ns>" of each file
    std::string initrd;
    bool operator==(const ImageStamp&) const = default;
  };
  absl::StatusOr<ImageStamp> StampImage() const;
  absl::StatusOr<std::string> ImageDigest();
  std::string KeyOf(const std::string& image_digest, const VmShape& shape) const;
  // Builds the template `key` after LoadTemplate failed with `load_error` (a template that is
  // there but unusable is removed first).
  absl::StatusOr<VmTemplate> Rebuild(const std::string& key, const VmShape& shape,
                                     const absl::Status& load_error);
  absl::StatusOr<VmTemplate> Build(const std::string& key, const VmShape& shape);
  absl::Status BootAndSave(const std::string& key, const VmShape& shape,
                           const std::string& build_dir);
  void RemoveStale(const std::vector<std::string>& keep);
  void BuilderLoop();
  void SetShapeStatus(size_t index, VmTemplateStatus::State state, const std::string& key,
                      const std::string& error, double build_seconds);

  Hypervisor* const hypervisor_;
  const VmTemplateOptions options_;

  absl::Mutex build_mu_;  // one build at a time
  std::map<std::string, std::string> digest_cache_ ABSL_GUARDED_BY(build_mu_);  // stamp -> hex

  absl::Mutex mu_;
  std::vector<VmTemplate> ready_ ABSL_GUARDED_BY(mu_);
  std::optional<ImageStamp> built_for_ ABSL_GUARDED_BY(mu_);   // image of ready_
  std::vector<VmTemplateStatus> status_ ABSL_GUARDED_BY(mu_);  // one per options_.shapes
  bool wanted_ ABSL_GUARDED_BY(mu_) = false;                   // the builder should run
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread builder_;
};

}  // namespace podvisor
