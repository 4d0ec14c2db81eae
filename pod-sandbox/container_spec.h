#pragma once

// Building a container's guest spec from what CreateContainer asked for and what the image says:
// pure functions (no I/O, no state), each tested on its own.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "image/image_service.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/container.h"
#include "pod-sandbox/sandbox.h"

namespace podvisor {

// Where the guest mounts a layer or volume disk: one level under /run (the agent creates the
// mount point but not its parents), followed by the disk's serial.
inline constexpr char kLayerMountDir[] = "/run/podvisor-layer-";
inline constexpr char kVolumeMountDir[] = "/run/podvisor-volume-";

// The files the agent writes in the guest for the whole pod; kubelet's mounts of its own copies
// map to these.
bool IsGuestPodFile(const std::string& container_path);

// The ContainerSpec parts that depend only on the request and the image: process args (CRI
// command/args over the image's entrypoint/cmd), env (CRI over image, by key), working directory
// and user.
ProcessSpec BuildProcess(const ContainerConfig& config, const ImageMetadata& image);
// The settings an exec'd process of a created container inherits: env, cwd, user and groups (as
// BuildProcess resolved them at create, kept in the record), no_new_privs and capabilities. The
// caller sets args, terminal and streams.
ProcessSpec ExecProcess(const ContainerMetadata& meta);
// Every capability the kernel knows, in the order of their numbers: bit i of a capability set
// (e.g. /proc/self/status CapBnd) is entry i.
const std::vector<std::string>& AllCapabilities();
// The capability set: the default set, plus adds, minus drops ("ALL" understood both ways; an
// add of ALL brings in `all`, every capability there is unless the caller can give fewer).
std::vector<std::string> BuildCapabilities(const ContainerConfig& config,
                                           const std::vector<std::string>& all);
inline std::vector<std::string> BuildCapabilities(const ContainerConfig& config) {
  return BuildCapabilities(config, AllCapabilities());
}

// What CreateContainer refuses whichever handler runs the pod: no name or image, limits out of
// range, a run_as_group without a user to pair with. INVALID_ARGUMENT.
absl::Status ValidateContainerConfig(const ContainerConfig& config);
// The guest's form of a container's limits.
ContainerResources ToGuestResources(const ContainerLimits& limits);
// An image's StopSignal ("SIGQUIT", "QUIT", "3"); SIGTERM when absent or unknown.
int ParseSignal(const std::string& name);
// The signal StopContainer sends first: the config's stop_signal, else the image's StopSignal,
// else SIGTERM.
int StopSignalOf(const ContainerConfig& config, const ImageMetadata& image);

// The image of an image volume (CRI Mount.image) and its layers' erofs images, lowest first.
struct ImageVolumeSource {
  ImageRecord image;
  std::vector<std::string> layer_paths;
};
// NOT_FOUND when the image is not pulled (CreateContainer does not pull, as kubelet expects);
// FAILED_PRECONDITION without layers; INVALID_ARGUMENT with more than one overlay can stack.
absl::StatusOr<ImageVolumeSource> ResolveImageVolume(const ImageController& images,
                                                     const ContainerMount& mount);

// The whole guest spec of a container whose layers and volumes are attached: process, seccomp,
// the overlay root filesystem over the layer disks, the mounts (pod files, shared directory
// volumes, snapshot disks, image volumes over their layer disks), masked and read-only paths,
// resources. INVALID_ARGUMENT when the request cannot be met (nothing to run, a writable host mount
// without a shared directory).
absl::StatusOr<ContainerSpec> BuildContainerSpec(const Sandbox& sandbox, const ImageRecord& image,
                                                 const ContainerConfig& config,
                                                 const std::vector<LayerDisk>& layers,
                                                 const std::vector<VolumeDisk>& volumes,
                                                 const std::vector<SharedVolume>& shared,
                                                 const std::vector<ImageVolumeRecord>& images = {});

}  // namespace podvisor
