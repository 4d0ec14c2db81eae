#include "image/layer_unpacker.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "image/digest.h"

extern char** environ;

namespace podvisor {
namespace {

constexpr size_t kBufferSize = 256 * 1024;
constexpr char kWhiteoutPrefix[] = ".wh.";
constexpr char kOpaqueMarker[] = ".wh..wh..opq";
constexpr char kOpaqueXattr[] = "trusted.overlay.opaque";

// Uncompresses a layer stream (plain tar, gzip or zstd by magic) and hashes what comes out.
class Decompressor {
 public:
  Decompressor(const ByteReader& in, int64_t max_out) : in_(in), max_out_(max_out) {
    in_buf_.resize(kBufferSize);
  }
  ~Decompressor() {
    if (mode_ == Mode::kGzip) inflateEnd(&zs_);
    if (zstd_ != nullptr) ZSTD_freeDCtx(zstd_);
  }

  // Up to `size` uncompressed bytes; 0 at the end.
  absl::StatusOr<size_t> Read(char* out, size_t size) {
    if (mode_ == Mode::kUnknown) {
      if (absl::Status s = Start(); !s.ok()) return s;
    }
    absl::StatusOr<size_t> n = ReadRaw(out, size);
    if (!n.ok()) return n;
    total_ += static_cast<int64_t>(*n);
    if (total_ > max_out_) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer uncompresses to more than ", max_out_, " bytes"));
    }
    hash_.Update(out, *n);
    return n;
  }

  // Reads to the end so that the digest covers the whole stream (tar padding included).
  absl::Status Drain() {
    std::vector<char> buf(kBufferSize);
    while (true) {
      absl::StatusOr<size_t> n = Read(buf.data(), buf.size());
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::OkStatus();
    }
  }

  std::string Digest() { return hash_.Finish(); }
  int64_t total() const { return total_; }

 private:
  enum class Mode { kUnknown, kPlain, kGzip, kZstd };

  absl::Status Fill() {
    if (in_eof_) return absl::OkStatus();
    if (in_pos_ < in_len_) return absl::OkStatus();
    absl::StatusOr<size_t> n = in_(in_buf_.data(), in_buf_.size());
    if (!n.ok()) return n.status();
    in_pos_ = 0;
    in_len_ = *n;
    if (*n == 0) in_eof_ = true;
    return absl::OkStatus();
  }

  absl::Status Start() {
    // Gather at least 4 bytes to look at the magic.
    while (!in_eof_ && in_len_ < 4) {
      absl::StatusOr<size_t> n = in_(in_buf_.data() + in_len_, in_buf_.size() - in_len_);
      if (!n.ok()) return n.status();
      if (*n == 0) in_eof_ = true;
      in_len_ += *n;
    }
    const auto* b = reinterpret_cast<const unsigned char*>(in_buf_.data());
    if (in_len_ >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
      mode_ = Mode::kGzip;
      std::memset(&zs_, 0, sizeof zs_);
      if (inflateInit2(&zs_, 15 + 16) != Z_OK) return absl::InternalError("inflateInit failed");
    } else if (in_len_ >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
      mode_ = Mode::kZstd;
      zstd_ = ZSTD_createDCtx();
      if (zstd_ == nullptr) return absl::InternalError("ZSTD_createDCtx failed");
    } else {
      mode_ = Mode::kPlain;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> ReadRaw(char* out, size_t size) {
    switch (mode_) {
      case Mode::kPlain: {
        if (absl::Status s = Fill(); !s.ok()) return s;
        size_t n = std::min(size, in_len_ - in_pos_);
        std::memcpy(out, in_buf_.data() + in_pos_, n);
        in_pos_ += n;
        return n;
      }
      case Mode::kGzip:
        return ReadGzip(out, size);
      case Mode::kZstd:
        return ReadZstd(out, size);
      default:
        return absl::InternalError("decompressor not started");
    }
  }

  absl::StatusOr<size_t> ReadGzip(char* out, size_t size) {
    zs_.next_out = reinterpret_cast<Bytef*>(out);
    zs_.avail_out = static_cast<uInt>(size);
    while (zs_.avail_out == size && !done_) {
      if (absl::Status s = Fill(); !s.ok()) return s;
      if (in_pos_ == in_len_) {
        if (!member_started_) {  // a clean end between members
          done_ = true;
          break;
        }
        return absl::InvalidArgumentError("layer: truncated gzip stream");
      }
      zs_.next_in = reinterpret_cast<Bytef*>(in_buf_.data() + in_pos_);
      zs_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
      member_started_ = true;
      int rc = inflate(&zs_, Z_NO_FLUSH);
      in_pos_ = in_len_ - zs_.avail_in;
      if (rc == Z_STREAM_END) {
        member_started_ = false;  // concatenated members may follow
        inflateReset(&zs_);
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer: corrupt gzip stream: ", zs_.msg ? zs_.msg : "inflate error"));
      }
    }
    return size - zs_.avail_out;
  }

  absl::StatusOr<size_t> ReadZstd(char* out, size_t size) {
    ZSTD_outBuffer ob{out, size, 0};
    while (ob.pos == 0 && !done_) {
      if (absl::Status s = Fill(); !s.ok()) return s;
      if (in_pos_ == in_len_) {
        if (frame_done_) {
          done_ = true;
          break;
        }
        return absl::InvalidArgumentError("layer: truncated zstd stream");
      }
      ZSTD_inBuffer ib{in_buf_.data(), in_len_, in_pos_};
      size_t rc = ZSTD_decompressStream(zstd_, &ob, &ib);
      in_pos_ = ib.pos;
      if (ZSTD_isError(rc)) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer: corrupt zstd stream: ", ZSTD_getErrorName(rc)));
      }
      frame_done_ = rc == 0;
    }
    return ob.pos;
  }

  const ByteReader& in_;
  const int64_t max_out_;
  std::vector<char> in_buf_;
  size_t in_pos_ = 0, in_len_ = 0;
  bool in_eof_ = false;
  Mode mode_ = Mode::kUnknown;
  z_stream zs_{};
  bool member_started_ = false;
  ZSTD_DCtx* zstd_ = nullptr;
  bool frame_done_ = true;
  bool done_ = false;
  int64_t total_ = 0;
  Sha256 hash_;
};

absl::Status Hostile(absl::string_view path, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("layer rejected: entry \"", path.substr(0, 256), "\": ", why));
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

// Writes the entries of one tar stream below a root directory, never leaving it.
class TarExtractor {
 public:
  TarExtractor(int root_fd, const UnpackLimits& limits) : root_fd_(root_fd), limits_(limits) {}

  absl::Status Extract(archive* a) {
    archive_entry* entry = nullptr;
    while (true) {
      int rc = archive_read_next_header(a, &entry);
      if (rc == ARCHIVE_EOF) break;
      if (rc == ARCHIVE_WARN) rc = ARCHIVE_OK;
      if (rc != ARCHIVE_OK) return ArchiveError(a, "read tar header");
      if (++entries_ > limits_.max_entries) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer rejected: more than ", limits_.max_entries, " entries"));
      }
      if (absl::Status s = Entry(a, entry); !s.ok()) return s;
    }
    return FixDirTimes();
  }

  int64_t entries() const { return entries_; }

 private:
  struct DirTime {
    std::vector<std::string> comps;
    timespec mtime;
  };

  static absl::Status ArchiveError(archive* a, absl::string_view what) {
    const char* msg = archive_error_string(a);
    return absl::InvalidArgumentError(
        absl::StrCat("layer: ", what, ": ", msg ? msg : "malformed tar stream"));
  }

  // Splits a tar path into clean components; rejects "..". An absolute name is the layer's own
  // ("/etc/x" is etc/x under the layer's root, as containerd and runc extract it; tools such as
  // umoci write "/" for the root itself): every component is then resolved below the root, so it
  // cannot leave the layer either.
  absl::StatusOr<std::vector<std::string>> Components(absl::string_view path) const {
    if (path.size() > limits_.max_path_bytes) return Hostile(path, "path too long");
    std::vector<std::string> comps;
    for (absl::string_view c : absl::StrSplit(path, '/')) {
      if (c.empty() || c == ".") continue;
      if (c == "..") return Hostile(path, "path contains \"..\"");
      if (c.size() > 255) return Hostile(path, "name longer than 255 bytes");
      comps.emplace_back(c);
    }
    return comps;
  }

  // Opens the directory holding comps[0..n), creating missing ones; never follows a symlink.
  absl::StatusOr<int> OpenDir(const std::vector<std::string>& comps, size_t n,
                              absl::string_view path) {
    int fd = ::dup(root_fd_);
    if (fd < 0) return ErrnoStatus("dup", errno);
    for (size_t i = 0; i < n; ++i) {
      int next = ::openat(fd, comps[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT) {
        if (::mkdirat(fd, comps[i].c_str(), 0755) != 0 && errno != EEXIST) {
          int err = errno;
          ::close(fd);
          return ErrnoStatus(absl::StrCat("layer: mkdir ", path), err);
        }
        next = ::openat(fd, comps[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      int err = errno;
      ::close(fd);
      if (next < 0) {
        if (err == ELOOP || err == ENOTDIR) {
          return Hostile(path, "path goes through a symlink or a non-directory");
        }
        return ErrnoStatus(absl::StrCat("layer: open parent of ", path), err);
      }
      fd = next;
    }
    return fd;
  }

  // Makes room for a new non-directory entry `name` in `dir`.
  absl::Status Clear(int dir, const std::string& name, absl::string_view path) {
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return absl::OkStatus();
    if (S_ISDIR(st.st_mode)) {
      if (::unlinkat(dir, name.c_str(), AT_REMOVEDIR) == 0) return absl::OkStatus();
      return Hostile(path, "replaces a non-empty directory");
    }
    if (::unlinkat(dir, name.c_str(), 0) != 0) {
      return ErrnoStatus(absl::StrCat("layer: replace ", path), errno);
    }
    return absl::OkStatus();
  }

  absl::Status Entry(archive* a, archive_entry* e) {
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) return absl::InvalidArgumentError("layer rejected: entry without a name");
    const std::string path = raw;
    absl::StatusOr<std::vector<std::string>> comps = Components(path);
    if (!comps.ok()) return comps.status();
    if (comps->empty()) return absl::OkStatus();  // the root itself ("./")
    const std::string name = comps->back();
    absl::StatusOr<int> dir = OpenDir(*comps, comps->size() - 1, path);
    if (!dir.ok()) return dir.status();
    FdCloser dir_closer{*dir};

    if (name == kOpaqueMarker) {
      if (::fsetxattr(*dir, kOpaqueXattr, "y", 1, 0) != 0) {
        return ErrnoStatus(absl::StrCat("layer: mark opaque ", path), errno);
      }
      return absl::OkStatus();
    }
    if (absl::StartsWith(name, kWhiteoutPrefix)) {
      const std::string target = name.substr(sizeof(kWhiteoutPrefix) - 1);
      if (target.empty() || target == "." || target == "..") return Hostile(path, "bad whiteout");
      if (absl::Status s = Clear(*dir, target, path); !s.ok()) return s;
      if (::mknodat(*dir, target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
        return ErrnoStatus(absl::StrCat("layer: whiteout ", path), errno);
      }
      return absl::OkStatus();
    }
    if (const char* link = archive_entry_hardlink(e); link != nullptr) {
      return HardLink(*dir, name, path, link);
    }
    const mode_t type = archive_entry_filetype(e);
    const mode_t mode = archive_entry_perm(e) & 07777;
    switch (type) {
      case AE_IFREG:
        return RegularFile(a, e, *dir, name, path, mode);
      case AE_IFDIR:
        return Directory(e, *dir, *comps, name, path, mode);
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(e);
        if (target == nullptr) return Hostile(path, "symlink without a target");
        if (absl::Status s = Clear(*dir, name, path); !s.ok()) return s;
        if (::symlinkat(target, *dir, name.c_str()) != 0) {
          return ErrnoStatus(absl::StrCat("layer: symlink ", path), errno);
        }
        return Attributes(e, *dir, name, -1, path);
      }
      case AE_IFIFO: {
        if (absl::Status s = Clear(*dir, name, path); !s.ok()) return s;
        if (::mknodat(*dir, name.c_str(), S_IFIFO | mode, 0) != 0) {
          return ErrnoStatus(absl::StrCat("layer: mkfifo ", path), errno);
        }
        return Attributes(e, *dir, name, -1, path);
      }
      case AE_IFCHR:
      case AE_IFBLK:
        return Hostile(path, "device nodes are not allowed in layers");
      default:
        return Hostile(path, "unsupported entry type");
    }
  }

  absl::Status HardLink(int dir, const std::string& name, absl::string_view path,
                        absl::string_view link) {
    absl::StatusOr<std::vector<std::string>> target = Components(link);
    if (!target.ok())
      return Hostile(path, absl::StrCat("hard link target: ", target.status().message()));
    if (target->empty()) return Hostile(path, "hard link to the layer root");
    absl::StatusOr<int> tdir = OpenDir(*target, target->size() - 1, link);
    if (!tdir.ok()) return tdir.status();
    FdCloser closer{*tdir};
    struct stat st {};
    if (::fstatat(*tdir, target->back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Hostile(path, "hard link to a file not in the layer");
    }
    if (S_ISDIR(st.st_mode)) return Hostile(path, "hard link to a directory");
    if (absl::Status s = Clear(dir, name, path); !s.ok()) return s;
    if (::linkat(*tdir, target->back().c_str(), dir, name.c_str(), 0) != 0) {
      return ErrnoStatus(absl::StrCat("layer: link ", path), errno);
    }
    return absl::OkStatus();
  }

  absl::Status RegularFile(archive* a, archive_entry* e, int dir, const std::string& name,
                           absl::string_view path, mode_t mode) {
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > limits_.max_entry_bytes) {
      return Hostile(path, absl::StrCat("file of ", archive_entry_size(e),
                                        " bytes is over the limit of ", limits_.max_entry_bytes));
    }
    if (absl::Status s = Clear(dir, name, path); !s.ok()) return s;
    int fd =
        ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus(absl::StrCat("layer: create ", path), errno);
    FdCloser closer{fd};
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int64_t end = 0;
    while (true) {
      int rc = archive_read_data_block(a, &block, &size, &offset);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
        return ArchiveError(a, absl::StrCat("read ", path));
      if (offset < 0 || offset + static_cast<int64_t>(size) > limits_.max_entry_bytes) {
        return Hostile(path, "file data over the limit");
      }
      const char* p = static_cast<const char*>(block);
      size_t left = size;
      off_t at = offset;
      while (left > 0) {
        ssize_t n = ::pwrite(fd, p, left, at);
        if (n < 0) {
          if (errno == EINTR) continue;
          return ErrnoStatus(absl::StrCat("layer: write ", path), errno);
        }
        p += n;
        at += n;
        left -= static_cast<size_t>(n);
      }
      end = std::max<int64_t>(end, offset + static_cast<int64_t>(size));
    }
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > end) {
      if (::ftruncate(fd, archive_entry_size(e)) != 0) {  // a sparse tail
        return ErrnoStatus(absl::StrCat("layer: truncate ", path), errno);
      }
    }
    if (absl::Status s = Xattrs(e, fd, path); !s.ok()) return s;
    if (::fchown(fd, archive_entry_uid(e), archive_entry_gid(e)) != 0 || ::fchmod(fd, mode) != 0) {
      return ErrnoStatus(absl::StrCat("layer: set owner/mode of ", path), errno);
    }
    timespec times[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                         {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    ::futimens(fd, times);
    return absl::OkStatus();
  }

  absl::Status Directory(archive_entry* e, int dir, const std::vector<std::string>& comps,
                         const std::string& name, absl::string_view path, mode_t mode) {
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
      if (::unlinkat(dir, name.c_str(), 0) != 0) {
        return ErrnoStatus(absl::StrCat("layer: replace ", path), errno);
      }
    }
    if (::mkdirat(dir, name.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoStatus(absl::StrCat("layer: mkdir ", path), errno);
    }
    int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(absl::StrCat("layer: open ", path), errno);
    FdCloser closer{fd};
    if (absl::Status s = Xattrs(e, fd, path); !s.ok()) return s;
    if (::fchown(fd, archive_entry_uid(e), archive_entry_gid(e)) != 0 || ::fchmod(fd, mode) != 0) {
      return ErrnoStatus(absl::StrCat("layer: set owner/mode of ", path), errno);
    }
    dir_times_.push_back({comps, {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}});
    return absl::OkStatus();
  }

  // Owner and times of a symlink or fifo (by name, without following).
  absl::Status Attributes(archive_entry* e, int dir, const std::string& name, int,
                          absl::string_view path) {
    if (::fchownat(dir, name.c_str(), archive_entry_uid(e), archive_entry_gid(e),
                   AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoStatus(absl::StrCat("layer: chown ", path), errno);
    }
    timespec times[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                         {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    ::utimensat(dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    return absl::OkStatus();
  }

  // Only user.* and security.capability: trusted.* would let a layer forge overlay whiteouts.
  absl::Status Xattrs(archive_entry* e, int fd, absl::string_view path) {
    archive_entry_xattr_reset(e);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      if (name == nullptr) continue;
      absl::string_view n = name;
      if (!absl::StartsWith(n, "user.") && n != "security.capability") continue;
      if (::fsetxattr(fd, name, value, size, 0) != 0 && errno != ENOTSUP) {
        return ErrnoStatus(absl::StrCat("layer: set xattr ", n, " on ", path), errno);
      }
    }
    return absl::OkStatus();
  }

  // Directory times last: creating entries inside a directory changes its mtime.
  absl::Status FixDirTimes() {
    for (auto it = dir_times_.rbegin(); it != dir_times_.rend(); ++it) {
      absl::StatusOr<int> dir = OpenDir(it->comps, it->comps.size() - 1, it->comps.back());
      if (!dir.ok()) continue;
      timespec times[2] = {it->mtime, it->mtime};
      ::utimensat(*dir, it->comps.back().c_str(), times, AT_SYMLINK_NOFOLLOW);
      ::close(*dir);
    }
    return absl::OkStatus();
  }

  const int root_fd_;
  const UnpackLimits& limits_;
  int64_t entries_ = 0;
  std::vector<DirTime> dir_times_;
};

struct ReadContext {
  Decompressor* decompressor;
  std::vector<char> buf;
  absl::Status error;
};

la_ssize_t ArchiveRead(archive* a, void* opaque, const void** buffer) {
  auto* ctx = static_cast<ReadContext*>(opaque);
  absl::StatusOr<size_t> n = ctx->decompressor->Read(ctx->buf.data(), ctx->buf.size());
  if (!n.ok()) {
    ctx->error = n.status();
    archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
    return -1;
  }
  *buffer = ctx->buf.data();
  return static_cast<la_ssize_t>(*n);
}

}  // namespace

absl::StatusOr<UnpackResult> UnpackLayer(const ByteReader& in, const std::string& dest_dir,
                                         const UnpackLimits& limits) {
  int root_fd = ::open(dest_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root_fd < 0) return ErrnoStatus(absl::StrCat("open ", dest_dir), errno);
  FdCloser root_closer{root_fd};
  Decompressor decompressor(in, limits.max_total_bytes);
  ReadContext ctx{&decompressor, std::vector<char>(kBufferSize), absl::OkStatus()};
  archive* a = archive_read_new();
  if (a == nullptr) return absl::ResourceExhaustedError("archive_read_new failed");
  absl::Cleanup free_archive = [a] { archive_read_free(a); };
  archive_read_support_format_tar(a);
  archive_read_support_format_empty(a);
  archive_read_support_filter_none(a);
  if (archive_read_open(a, &ctx, nullptr, ArchiveRead, nullptr) != ARCHIVE_OK) {
    if (!ctx.error.ok()) return ctx.error;
    const char* msg = archive_error_string(a);
    return absl::InvalidArgumentError(absl::StrCat("layer: not a tar stream: ", msg ? msg : ""));
  }
  TarExtractor extractor(root_fd, limits);
  absl::Status s = extractor.Extract(a);
  if (!ctx.error.ok()) return ctx.error;  // the cause beneath libarchive's message
  if (!s.ok()) return s;
  if (absl::Status d = decompressor.Drain(); !d.ok()) return d;
  return UnpackResult{decompressor.Digest(), decompressor.total(), extractor.entries()};
}

absl::StatusOr<UnpackResult> UnpackLayerFile(const std::string& blob_path,
                                             const std::string& dest_dir,
                                             const UnpackLimits& limits) {
  int fd = ::open(blob_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", blob_path), errno);
  FdCloser closer{fd};
  ByteReader reader = [fd, &blob_path](char* buf, size_t size) -> absl::StatusOr<size_t> {
    while (true) {
      ssize_t n = ::read(fd, buf, size);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return ErrnoStatus(absl::StrCat("read ", blob_path), errno);
    }
  };
  return UnpackLayer(reader, dest_dir, limits);
}

absl::Status RunCommand(const std::vector<std::string>& argv, std::string* output) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    return ErrnoStatus(absl::StrCat("run ", argv[0]), rc);
  }
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.size() < 65536) out.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output) *output = out;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  std::string tail = out.size() > 1000 ? out.substr(out.size() - 1000) : out;
  return absl::InternalError(
      absl::StrCat(argv[0], " failed (", WIFEXITED(status) ? "exit " : "signal ",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), "): ", tail));
}

absl::Status BuildErofsImage(const std::string& dir, const std::string& image_path) {
  return RunCommand({"mkfs.erofs", "--quiet", image_path, dir});
}

}  // namespace podvisor
