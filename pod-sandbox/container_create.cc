// CreateContainer: root filesystem disks, volumes, the spec, the output streams, the guest's
// container and the durable record, undone step by step when a later one fails.
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_output.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {

absl::StatusOr<std::string> ContainerController::Create(const std::string& sandbox_id_or_prefix,
                                                        const ContainerConfig& config) {
  if (absl::Status s = ValidateContainerConfig(config); !s.ok()) return s;
  absl::StatusOr<std::string> sandbox_id = sandboxes_->Resolve(sandbox_id_or_prefix);
  if (!sandbox_id.ok()) return sandbox_id.status();
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*sandbox_id);
  if (!sandbox.ok()) return sandbox.status();
  const SandboxMetadata& sm = sandbox->metadata;
  const std::string name =
      ContainerName(config.name, sm.pod_name, sm.pod_namespace, sm.pod_uid, config.attempt);
  const std::string context = absl::StrCat("create container ", name);
  for (const Container& c : containers_->List()) {
    if (c.metadata.name == name) {
      return absl::AlreadyExistsError(
          absl::StrCat(context, ": the name is reserved by ", c.metadata.id));
    }
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_view_->Agent(*sandbox_id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  absl::StatusOr<ImageRecord> image = images_->Get(config.image);
  if (!image.ok()) return WithContext(image.status(), context);
  absl::StatusOr<std::vector<std::string>> layer_paths = images_->LayerImages(image->metadata.id);
  if (!layer_paths.ok()) return WithContext(layer_paths.status(), context);

  Container c;
  ContainerMetadata& meta = c.metadata;
  meta.id = NewObjectId();
  meta.name = name;
  meta.sandbox_id = *sandbox_id;
  meta.config = config;
  meta.image_id = image->metadata.id;
  meta.image_ref = DigestedReference(*image, config.image);
  if (!config.log_path.empty()) {
    meta.log_path = (config.log_path[0] == '/' || sm.log_directory.empty())
                        ? config.log_path
                        : absl::StrCat(sm.log_directory, "/", config.log_path);
  }
  meta.created_at_ns = absl::ToUnixNanos(absl::Now());
  c.status.state = ContainerState::kCreated;
  c.status.resources = config.resources;

  auto sandbox_lock = SandboxLockFor(*sandbox_id);
  std::lock_guard<std::mutex> guard(*sandbox_lock);
  // Where the time goes, for the debug log (docs/performance.md, "Container steps").
  absl::Time mark = absl::Now();
  std::string steps;
  auto step = [&](absl::string_view what) {
    const absl::Time now = absl::Now();
    absl::StrAppend(&steps, steps.empty() ? "" : ", ", what, " ",
                    absl::SixDigits(absl::ToDoubleMilliseconds(now - mark)), " ms");
    mark = now;
  };
  absl::StatusOr<std::vector<LayerDisk>> layers =
      layer_disks_.Attach(*sandbox_id, **agent, *layer_paths, AttachedLayers(*sandbox_id));
  if (!layers.ok()) return WithContext(layers.status(), context);
  meta.layers = *layers;
  auto detach =
      absl::MakeCleanup([&] { DetachUnusedLayers(*sandbox_id, HeldLayers(meta), meta.id); });
  step("layer disks");
  if (absl::Status s = AttachImageVolumes(*sandbox_id, **agent, config, &meta); !s.ok()) {
    return WithContext(s, context);
  }
  CrashPoint("create_container.layers_attached");

  absl::StatusOr<ContainerVolumes> volumes =
      VolumesFor(*sandbox).Attach(*sandbox, **agent, meta.id, config);
  if (!volumes.ok()) return WithContext(volumes.status(), context);
  meta.volumes = volumes->disks;
  meta.shared_volumes = volumes->shared;
  auto detach_volumes = absl::MakeCleanup([&] { DetachVolumes(*sandbox_id, meta.id, *volumes); });
  step("volumes");
  CrashPoint("create_container.volumes_attached");

  absl::StatusOr<ContainerSpec> spec = BuildContainerSpec(
      *sandbox, *image, config, meta.layers, meta.volumes, meta.shared_volumes, meta.image_volumes);
  if (!spec.ok()) return WithContext(spec.status(), context);
  meta.env = spec->process.env;
  meta.cwd = spec->process.cwd;
  meta.uid = spec->process.user.uid;
  meta.gid = spec->process.user.gid;
  meta.gid_from_passwd = spec->process.user.gid_from_passwd;
  meta.username = spec->process.user.username;
  meta.stop_signal = StopSignalOf(config, image->metadata);

  // Output: the log file, fed by the container's stdio streams.
  absl::StatusOr<std::shared_ptr<ContainerOutput>> made =
      NewOutput(meta, sm.state_dir, *agent, true);
  if (!made.ok()) return WithContext(made.status(), context);
  std::shared_ptr<ContainerOutput> output = *made;
  spec->process.stdout_stream = output->output_stream[0];
  spec->process.stderr_stream = output->output_stream[1];
  spec->process.stdin_stream = output->stdin_stream;
  spec->process.acked_output = true;
  auto close_streams = absl::MakeCleanup([&] {
    for (uint32_t s : output->streams) (*agent)->CloseStream(s);
  });

  step("spec and output");
  absl::StatusOr<std::optional<ContainerUser>> user =
      (*agent)->CreateContainer(meta.id, *spec, options_.agent_call_timeout);
  if (!user.ok()) return WithContext(user.status(), context);
  meta.resolved_user = *user;
  step("agent CreateContainer");
  auto remove_guest = absl::MakeCleanup(
      [&] { (void)(*agent)->RemoveContainer(meta.id, true, options_.agent_call_timeout); });
  // A crash from here until the record is written leaves a guest container, its disks and binds
  // that no record owns: Reconcile releases them at the next start.
  CrashPoint("create_container.guest_created");
  {
    absl::MutexLock lock(&mu_);
    outputs_[meta.id] = output;
  }
  if (absl::Status s = containers_->Add(c); !s.ok()) {
    DropOutput(meta.id);
    return WithContext(s, context);
  }
  std::move(remove_guest).Cancel();
  std::move(close_streams).Cancel();
  std::move(detach_volumes).Cancel();
  std::move(detach).Cancel();
  step("durable record");
  PV_LOG(kDebug) << "create container " << ShortId(meta.id) << ": " << steps;
  PV_LOG(kInfo) << "container " << ShortId(meta.id) << " (" << name << ") created in sandbox "
                << ShortId(*sandbox_id);
  return meta.id;
}

absl::Status ContainerController::AttachImageVolumes(const std::string& sandbox_id,
                                                     AgentClient& agent,
                                                     const ContainerConfig& config,
                                                     ContainerMetadata* meta) {
  // The layers this VM has, including those this container attached already: read at the first
  // image volume (the caller holds the sandbox lock, so only this loop adds to them).
  std::map<std::string, LayerDisk> attached;
  bool read_attached = false;
  for (const ContainerMount& m : config.mounts) {
    if (m.image.empty()) continue;
    absl::StatusOr<ImageVolumeSource> source = ResolveImageVolume(*images_, m);
    if (!source.ok()) return source.status();
    if (!read_attached) {
      read_attached = true;
      attached = AttachedLayers(sandbox_id);
      for (const LayerDisk& d : HeldLayers(*meta)) attached[d.path] = d;
    }
    absl::StatusOr<std::vector<LayerDisk>> layers =
        layer_disks_.Attach(sandbox_id, agent, source->layer_paths, attached);
    if (!layers.ok()) {
      return WithContext(layers.status(),
                         absl::StrCat("image volume ", m.image, " at ", m.container_path));
    }
    for (const LayerDisk& d : *layers) attached[d.path] = d;
    meta->image_volumes.push_back(
        ImageVolumeRecord{m.container_path, source->image.metadata.id, m.image_sub_path, *layers});
  }
  return absl::OkStatus();
}

}  // namespace podvisor
