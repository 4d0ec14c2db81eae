#include "agent/userns_rootfs.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <utility>
#include <vector>

namespace podvisor::agent {
namespace {

constexpr char kCapabilityXattr[] = "security.capability";

struct Entry {
  std::string path;
  uid_t uid;
  gid_t gid;
  mode_t mode;
};

// nftw has no user argument: the walk of one call at a time (the agent creates containers one by
// one under its lock; concurrent walks would still each see only their own, thread-local).
thread_local std::vector<Entry>* walk_entries = nullptr;
thread_local std::set<std::pair<dev_t, ino_t>>* walk_seen = nullptr;

int Collect(const char* path, const struct stat* st, int, struct FTW*) {
  if (!S_ISDIR(st->st_mode) && st->st_nlink > 1 &&
      !walk_seen->insert({st->st_dev, st->st_ino}).second) {
    return 0;  // another name of an inode already listed
  }
  walk_entries->push_back({path, st->st_uid, st->st_gid, st->st_mode});
  return 0;
}

Error ShiftOne(const Entry& e, const IdRange& uids, const IdRange& gids) {
  const uid_t uid = MapId(uids, e.uid);
  const gid_t gid = MapId(gids, e.gid);
  if (uid == e.uid && gid == e.gid) return Error::Ok();
  const bool regular = S_ISREG(e.mode);
  std::string caps;
  if (regular) {
    char buf[256];
    const ssize_t n = lgetxattr(e.path.c_str(), kCapabilityXattr, buf, sizeof(buf));
    if (n > 0) caps.assign(buf, static_cast<size_t>(n));
  }
  if (lchown(e.path.c_str(), uid, gid) != 0) return ErrnoError("chown " + e.path, errno);
  if (regular && (e.mode & (S_ISUID | S_ISGID)) != 0 &&
      chmod(e.path.c_str(), e.mode & 07777) != 0) {
    return ErrnoError("chmod " + e.path, errno);
  }
  if (!caps.empty() &&
      lsetxattr(e.path.c_str(), kCapabilityXattr, caps.data(), caps.size(), 0) != 0) {
    return ErrnoError("restore file capabilities of " + e.path, errno);
  }
  return Error::Ok();
}

}  // namespace

uint32_t MapId(const IdRange& range, uint32_t id) {
  if (id < range.container_id || id - range.container_id >= range.size) return id;
  return range.host_id + (id - range.container_id);
}

Error ShiftOwnership(const std::string& root, const IdRange& uids, const IdRange& gids,
                     uint64_t* entries) {
  std::vector<Entry> list;
  std::set<std::pair<dev_t, ino_t>> seen;
  walk_entries = &list;
  walk_seen = &seen;
  const int rc = nftw(root.c_str(), Collect, 64, FTW_PHYS | FTW_MOUNT);
  const int walk_errno = errno;
  walk_entries = nullptr;
  walk_seen = nullptr;
  if (rc != 0) return ErrnoError("walk " + root, walk_errno);
  uint64_t changed = 0;
  for (const Entry& e : list) {
    if (Error err = ShiftOne(e, uids, gids); !err.ok()) return err;
    if (MapId(uids, e.uid) != e.uid || MapId(gids, e.gid) != e.gid) ++changed;
  }
  if (entries) *entries = changed;
  return Error::Ok();
}

}  // namespace podvisor::agent
