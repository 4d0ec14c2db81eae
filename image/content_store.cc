#include "image/content_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor {
namespace {

std::atomic<uint64_t> temp_counter{0};

}  // namespace

absl::Status ContentStore::Init() {
  if (absl::Status s = MakeDirs(root_ + "/blobs/sha256", 0700); !s.ok()) return s;
  if (absl::Status s = RemoveAll(root_ + "/ingest"); !s.ok()) return s;
  return MakeDirs(root_ + "/ingest", 0700);
}

std::string ContentStore::BlobPath(absl::string_view digest) const {
  return absl::StrCat(root_, "/blobs/sha256/", DigestHex(digest));
}

bool ContentStore::Has(absl::string_view digest) const {
  if (!ValidateDigest(digest).ok()) return false;
  struct stat st {};
  return ::stat(BlobPath(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ContentStore::Read(absl::string_view digest, int64_t max_size) const {
  if (absl::Status s = ValidateDigest(digest); !s.ok()) return s;
  const std::string path = BlobPath(digest);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("blob ", digest, " not stored"));
    return ErrnoStatus(absl::StrCat("stat ", path), errno);
  }
  if (st.st_size > max_size) {
    return absl::OutOfRangeError(absl::StrCat("blob ", digest, " is larger than ", max_size));
  }
  return ReadFile(path);
}

absl::Status ContentStore::Put(absl::string_view digest, absl::string_view data) {
  if (Has(digest)) return absl::OkStatus();
  auto writer = NewWriter();
  if (!writer.ok()) return writer.status();
  if (absl::Status s = (*writer)->Write(data.data(), data.size()); !s.ok()) return s;
  return (*writer)->Commit(digest, static_cast<int64_t>(data.size()));
}

absl::Status ContentStore::Delete(absl::string_view digest) {
  if (absl::Status s = ValidateDigest(digest); !s.ok()) return s;
  const std::string path = BlobPath(digest);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("remove ", path), errno);
  }
  return absl::OkStatus();
}

std::vector<std::string> ContentStore::List() const {
  std::vector<std::string> out;
  DIR* dir = ::opendir((root_ + "/blobs/sha256").c_str());
  if (dir == nullptr) return out;
  while (dirent* e = ::readdir(dir)) {
    if (IsHex64(e->d_name)) out.push_back(absl::StrCat(kSha256Prefix, e->d_name));
  }
  ::closedir(dir);
  return out;
}

absl::StatusOr<std::unique_ptr<ContentStore::Writer>> ContentStore::NewWriter() const {
  std::string path = absl::StrCat(root_, "/ingest/", ::getpid(), "-", temp_counter.fetch_add(1));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", path), errno);
  return std::unique_ptr<Writer>(new Writer(this, std::move(path), fd));
}

ContentStore::Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status ContentStore::Writer::Write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("write ", temp_path_), errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  hash_->Update(data, size);
  written_ += static_cast<int64_t>(size);
  return absl::OkStatus();
}

absl::Status ContentStore::Writer::Reset() {
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
    return ErrnoStatus(absl::StrCat("truncate ", temp_path_), errno);
  }
  hash_ = std::make_unique<Sha256>();
  written_ = 0;
  return absl::OkStatus();
}

absl::Status ContentStore::Writer::Commit(absl::string_view expected_digest,
                                          int64_t expected_size) {
  if (absl::Status s = ValidateDigest(expected_digest); !s.ok()) return s;
  if (expected_size >= 0 && written_ != expected_size) {
    return absl::DataLossError(absl::StrCat("blob ", expected_digest, ": got ", written_,
                                            " bytes, the descriptor says ", expected_size));
  }
  const std::string got = hash_->Finish();
  hash_ = std::make_unique<Sha256>();
  if (got != expected_digest) {
    return absl::DataLossError(
        absl::StrCat("blob ", expected_digest, ": content has digest ", got, " (digest mismatch)"));
  }
  if (::fsync(fd_) != 0) return ErrnoStatus(absl::StrCat("fsync ", temp_path_), errno);
  ::close(fd_);
  fd_ = -1;
  const std::string dest = store_->BlobPath(expected_digest);
  if (::rename(temp_path_.c_str(), dest.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("rename blob into ", dest), errno);
  }
  committed_ = true;
  return FsyncDir(store_->root() + "/blobs/sha256");
}

}  // namespace podvisor
