// Root filesystems (overlay over the layer disks, or the initramfs) and disk-backed mounts.
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/async_writer.h"
#include "agent/container_util.h"
#include "agent/containers.h"
#include "agent/containers_impl.h"
#include "agent/disks.h"
#include "agent/image_volume.h"
#include "agent/log.h"
#include "agent/oci_spec.h"
#include "agent/output_buffer.h"
#include "agent/reaper.h"
#include "agent/server.h"

namespace podvisor::agent {

Error ContainerManager::Impl::PrepareRootfs(const v1::Rootfs& root, bool userns, Container* c) {
  const Error not_shiftable(Code::kFailedPrecondition,
                            "a container in a user namespace needs an image's layers as its root "
                            "filesystem (an overlay whose ownership can be shifted)");
  switch (root.source_case()) {
    case v1::Rootfs::kPath: {
      if (userns) return not_shiftable;
      struct stat st;
      if (root.path().empty() || root.path()[0] != '/' || stat(root.path().c_str(), &st) != 0 ||
          !S_ISDIR(st.st_mode)) {
        return Error(Code::kInvalidArgument, "rootfs path " + root.path() + " is not a directory");
      }
      c->rootfs = root.path();
      return Error::Ok();
    }
    case v1::Rootfs::kBlockDevice: {
      if (!options.pid1) {
        // On a host, a serial could name one of the host's own disks.
        return Error(Code::kFailedPrecondition, "no disks in --no-pid1 mode");
      }
      const v1::BlockDeviceSource& b = root.block_device();
      std::string device;
      if (Error e = FindBlockDevice("/sys", b.serial(), 5000, &device); !e.ok()) return e;
      std::vector<std::string> opts(b.options().begin(), b.options().end());
      c->rootfs = c->bundle + "/rootfs";
      mkdir(c->rootfs.c_str(), 0755);
      if (!b.overlay()) {
        if (userns) return not_shiftable;
        if (Error e = MountWithOptions(device, c->rootfs, b.fs_type(), opts, root.readonly());
            !e.ok()) {
          return e;
        }
        c->own_mounts.push_back(c->rootfs);
        return Error::Ok();
      }
      const std::string lower = c->bundle + "/lower", upper = c->bundle + "/upper",
                        work = c->bundle + "/work";
      for (const std::string& d : {lower, upper, work}) mkdir(d.c_str(), 0755);
      if (Error e = MountWithOptions(device, lower, b.fs_type(), opts, true); !e.ok()) return e;
      c->own_mounts.push_back(lower);
      std::vector<std::string> overlay_opts = {"lowerdir=" + lower, "upperdir=" + upper,
                                               "workdir=" + work};
      if (userns) overlay_opts.push_back("metacopy=on");
      if (Error e = MountWithOptions("overlay", c->rootfs, "overlay", overlay_opts, false);
          !e.ok()) {
        return e;
      }
      c->own_mounts.push_back(c->rootfs);
      return Error::Ok();
    }
    case v1::Rootfs::kMount: {
      const v1::Mount& m = root.mount();
      c->rootfs = c->bundle + "/rootfs";
      mkdir(c->rootfs.c_str(), 0755);
      std::vector<std::string> opts(m.options().begin(), m.options().end());
      // An overlay of layers the host mounted (one disk per image layer) without an upper of
      // its own gets a writable upper in guest RAM, as the block-device overlay does.
      const bool own_upper = std::none_of(opts.begin(), opts.end(), [](const std::string& o) {
        return o.rfind("upperdir=", 0) == 0;
      });
      if (userns && (m.type() != "overlay" || !own_upper)) return not_shiftable;
      if (userns) opts.push_back("metacopy=on");
      if (m.type() == "overlay" && own_upper) {
        const std::string upper = c->bundle + "/upper", work = c->bundle + "/work";
        for (const std::string& d : {upper, work}) mkdir(d.c_str(), 0755);
        opts.push_back("upperdir=" + upper);
        opts.push_back("workdir=" + work);
      }
      if (Error e = MountWithOptions(m.source(), c->rootfs, m.type(), opts, false); !e.ok()) {
        return e;
      }
      c->own_mounts.push_back(c->rootfs);
      return Error::Ok();
    }
    case v1::Rootfs::SOURCE_NOT_SET:
      break;
  }
  return Error(Code::kInvalidArgument, "container has no root filesystem");
}

// Mounts whose source is "blockdev:<serial>" name a disk the host attached: the agent mounts it
// under the bundle and hands crun a bind mount of that directory. Those whose source is
// "image-volume:<index>" name one of the spec's image volumes, stacked from layer disks already
// mounted, and bound the same way.
Error ContainerManager::Impl::PrepareDiskMounts(v1::ContainerSpec* spec, Container* c) {
  constexpr char kPrefix[] = "blockdev:";
  constexpr char kImagePrefix[] = "image-volume:";
  for (int i = 0; i < spec->mounts_size(); ++i) {
    v1::Mount* m = spec->mutable_mounts(i);
    if (m->source().rfind(kImagePrefix, 0) == 0) {
      const std::string index = m->source().substr(sizeof(kImagePrefix) - 1);
      char* end = nullptr;
      const unsigned long n = std::strtoul(index.c_str(), &end, 10);
      if (index.empty() || *end != '\0' ||
          n >= static_cast<unsigned long>(spec->image_volumes_size())) {
        return Error(Code::kInvalidArgument,
                     "mount " + m->destination() + ": no image volume " + index);
      }
      const v1::ImageVolume& v = spec->image_volumes(static_cast<int>(n));
      const std::string dir = c->bundle + "/image-volumes";
      if (Error e = MakeDirs(dir); !e.ok()) return e;
      std::string source;
      const std::vector<std::string> lowers(v.lower_dirs().begin(), v.lower_dirs().end());
      std::vector<std::string> made;
      Error e =
          MountImageVolume(lowers, v.sub_path(), dir + "/" + std::to_string(i), &made, &source);
      c->own_mounts.insert(c->own_mounts.end(), made.begin(), made.end());
      if (!e.ok()) return e.With("mount " + m->destination());
      m->set_source(source);
      m->set_type("bind");
      m->clear_options();
      for (const char* o : {"bind", "ro", "nosuid", "nodev"}) m->add_options(o);
      continue;
    }
    if (m->source().rfind(kPrefix, 0) != 0) continue;
    if (!options.pid1) return Error(Code::kFailedPrecondition, "no disks in --no-pid1 mode");
    std::string device;
    const std::string serial = m->source().substr(sizeof(kPrefix) - 1);
    if (Error e = FindBlockDevice("/sys", serial, 5000, &device); !e.ok()) {
      return e.With("mount " + m->destination());
    }
    const std::string dir = c->bundle + "/mounts/" + std::to_string(i);
    if (Error e = MakeDirs(dir); !e.ok()) return e;
    std::vector<std::string> opts;
    bool readonly = false;
    for (const std::string& o : m->options()) {
      if (o == "ro") readonly = true;
      if (o != "rbind" && o != "bind" && o != "rprivate" && o != "private") opts.push_back(o);
    }
    if (Error e = MountWithOptions(device, dir, m->type(), opts, readonly); !e.ok()) {
      return e.With("mount " + m->destination());
    }
    c->own_mounts.push_back(dir);
    m->set_source(dir);
    m->set_type("bind");
    m->clear_options();
    m->add_options("rbind");
    if (readonly) m->add_options("ro");
  }
  return Error::Ok();
}

}  // namespace podvisor::agent
