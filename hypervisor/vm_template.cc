#include "hypervisor/vm_template.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/status_util.h"

namespace podvisor {
namespace {

// Bumped whenever what a template holds changes meaning (devices, command line, layout).
constexpr char kTemplateFormat[] = "podvisor-template 1";
constexpr size_t kKeyHexChars = 16;
constexpr char kMetaFile[] = "template.txt";
constexpr char kBuildPrefix[] = ".build-";
constexpr long kTmpfsMagic = 0x01021994;

struct EvpFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 15];
  }
  return out;
}

std::string Sha256(absl::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  return Hex(digest, len);
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  absl::Cleanup close_fd = [fd] { close(fd); };
  std::unique_ptr<EVP_MD_CTX, EvpFree> ctx(EVP_MD_CTX_new());
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("read ", path), errno);
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  return Hex(digest, len);
}

absl::StatusOr<std::string> StampFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(absl::StrCat("stat ", path), errno);
  return absl::StrCat(st.st_dev, " ", st.st_ino, " ", st.st_size, " ",
                      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
}

bool IsKeyName(absl::string_view name) {
  if (name.size() != kKeyHexChars) return false;
  for (char c : name) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string MetaText(const VmTemplate& t) {
  return absl::StrCat("key ", t.key, "\nvcpus ", t.shape.vcpus, "\nmemory_mib ", t.shape.memory_mib,
                      "\nmac ", t.mac, "\n");
}

// Reads a template directory written by Build; NOT_FOUND unless it is complete.
absl::StatusOr<VmTemplate> LoadTemplate(const std::string& dir, const std::string& key) {
  absl::StatusOr<std::string> meta = ReadFile(absl::StrCat(dir, "/", kMetaFile));
  if (!meta.ok()) return absl::NotFoundError(absl::StrCat("no template ", key));
  VmTemplate t;
  t.memory_file = dir + "/ram";
  t.state_file = dir + "/state";
  for (absl::string_view line : absl::StrSplit(*meta, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (kv.first == "key") t.key = kv.second;
    if (kv.first == "vcpus" && !absl::SimpleAtoi(kv.second, &t.shape.vcpus)) t.key.clear();
    if (kv.first == "memory_mib" && !absl::SimpleAtoi(kv.second, &t.shape.memory_mib)) {
      t.key.clear();
    }
    if (kv.first == "mac") t.mac = kv.second;
  }
  struct stat st;
  if (t.key != key || t.mac.empty() || stat(t.memory_file.c_str(), &st) != 0 ||
      stat(t.state_file.c_str(), &st) != 0) {
    return absl::DataLossError(absl::StrCat("template ", key, " in ", dir, " is incomplete"));
  }
  return t;
}

}  // namespace

const char* VmTemplateStateName(VmTemplateStatus::State state) {
  switch (state) {
    case VmTemplateStatus::State::kPending:
      return "pending";
    case VmTemplateStatus::State::kBuilding:
      return "building";
    case VmTemplateStatus::State::kReady:
      return "ready";
    case VmTemplateStatus::State::kFailed:
      return "failed";
  }
  return "unknown";
}

VmTemplateStore::VmTemplateStore(Hypervisor* hypervisor, VmTemplateOptions options)
    : hypervisor_(hypervisor), options_(std::move(options)) {
  for (const VmShape& shape : options_.shapes) {
    VmTemplateStatus s;
    s.shape = shape;
    status_.push_back(s);
  }
}

void VmTemplateStore::SetShapeStatus(size_t index, VmTemplateStatus::State state,
                                     const std::string& key, const std::string& error,
                                     double build_seconds) {
  absl::MutexLock lock(&mu_);
  VmTemplateStatus& s = status_[index];
  s.state = state;
  s.key = key;
  if (state == VmTemplateStatus::State::kFailed) s.last_error = error;
  if (state == VmTemplateStatus::State::kReady) {
    s.built_at = absl::Now();
    s.build_seconds = build_seconds;
    s.last_error.clear();
  }
}

VmTemplateStore::~VmTemplateStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (builder_.joinable()) builder_.join();
}

void VmTemplateStore::Start() {
  {
    absl::MutexLock lock(&mu_);
    wanted_ = true;
  }
  builder_ = std::thread([this] { BuilderLoop(); });
}

void VmTemplateStore::BuilderLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wanted_; };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      wanted_ = false;
    }
    if (absl::Status s = BuildAll(); !s.ok()) {
      PV_LOG(kWarning) << "VM templates: " << s.message() << " (pods of that shape boot cold)";
    }
  }
}

absl::StatusOr<VmTemplateStore::ImageStamp> VmTemplateStore::StampImage() const {
  ImageStamp stamp;
  absl::StatusOr<std::string> kernel = StampFile(options_.kernel);
  if (!kernel.ok()) return kernel.status();
  absl::StatusOr<std::string> initrd = StampFile(options_.initrd);
  if (!initrd.ok()) return initrd.status();
  stamp.kernel = *kernel;
  stamp.initrd = *initrd;
  return stamp;
}

absl::StatusOr<std::string> VmTemplateStore::ImageDigest() {
  std::string digests;
  for (const std::string* path : {&options_.kernel, &options_.initrd}) {
    absl::StatusOr<std::string> stamp = StampFile(*path);
    if (!stamp.ok()) return stamp.status();
    std::string cache_key = absl::StrCat(*path, " ", *stamp);
    absl::MutexLock lock(&build_mu_);
    auto it = digest_cache_.find(cache_key);
    if (it == digest_cache_.end()) {
      absl::StatusOr<std::string> digest = Sha256File(*path);
      if (!digest.ok()) return digest.status();
      it = digest_cache_.emplace(cache_key, *digest).first;
    }
    absl::StrAppend(&digests, it->second, " ");
  }
  return digests;
}

std::string VmTemplateStore::KeyOf(const std::string& image_digest, const VmShape& shape) const {
  return Sha256(absl::StrCat(kTemplateFormat, "\n", image_digest, "\n", hypervisor_->Versions(),
                             "\n", shape.vcpus, " ", shape.memory_mib, "\n"))
      .substr(0, kKeyHexChars);
}

absl::Status VmTemplateStore::BuildAll() {
  struct statfs fs;
  if (MakeDirs(options_.dir, 0700).ok() && statfs(options_.dir.c_str(), &fs) == 0 &&
      fs.f_type != kTmpfsMagic) {
    return absl::FailedPreconditionError(absl::StrCat(
        "template directory ", options_.dir, " is not on tmpfs (clones map its RAM files)"));
  }
  absl::StatusOr<ImageStamp> stamp = StampImage();
  if (!stamp.ok()) return WithContext(stamp.status(), "guest image");
  absl::StatusOr<std::string> digest = ImageDigest();
  if (!digest.ok()) return WithContext(digest.status(), "guest image");
  absl::Status first;
  std::vector<VmTemplate> ready;
  std::vector<std::string> keys;
  for (size_t i = 0; i < options_.shapes.size(); ++i) {
    const VmShape& shape = options_.shapes[i];
    std::string key = KeyOf(*digest, shape);
    keys.push_back(key);
    // One look at what is on disk decides: a valid template is used as it is; anything else is
    // built (a broken one removed first), timed and counted.
    const std::string dir = absl::StrCat(options_.dir, "/", key);
    absl::StatusOr<VmTemplate> t = LoadTemplate(dir, key);
    double seconds = 0;
    if (!t.ok()) {
      SetShapeStatus(i, VmTemplateStatus::State::kBuilding, key, "", 0);
      const absl::Time start = absl::Now();
      t = Rebuild(key, shape, t.status());
      seconds = absl::ToDoubleSeconds(absl::Now() - start);
      metrics::ObserveTemplateBuild(seconds, t.ok());
    }
    SetShapeStatus(i, t.ok() ? VmTemplateStatus::State::kReady : VmTemplateStatus::State::kFailed,
                   key, t.ok() ? "" : std::string(t.status().message()), seconds);
    if (!t.ok()) {
      if (first.ok()) {
        first = WithContext(
            t.status(), absl::StrCat("template ", shape.vcpus, " vCPU ", shape.memory_mib, " MiB"));
      }
      continue;
    }
    ready.push_back(*t);
    // Usable at once, while the next shapes build (a new guest image drops the old ones).
    absl::MutexLock lock(&mu_);
    if (!built_for_.has_value() || !(*built_for_ == *stamp)) {
      ready_.clear();
      built_for_ = *stamp;
    }
    ready_.push_back(*t);
  }
  {
    // Exactly the shapes that are ready now (a shape that failed this time is dropped).
    absl::MutexLock lock(&mu_);
    ready_ = std::move(ready);
    built_for_ = *stamp;
  }
  RemoveStale(keys);
  return first;
}

absl::StatusOr<VmTemplate> VmTemplateStore::Rebuild(const std::string& key, const VmShape& shape,
                                                    const absl::Status& load_error) {
  if (!absl::IsNotFound(load_error)) {
    PV_LOG(kWarning) << load_error.message() << ": rebuilding it";
    if (absl::Status s = RemoveAll(absl::StrCat(options_.dir, "/", key)); !s.ok()) return s;
  }
  return Build(key, shape);
}

absl::StatusOr<VmTemplate> VmTemplateStore::Build(const std::string& key, const VmShape& shape) {
  absl::MutexLock lock(&build_mu_);
  const std::string final_dir = absl::StrCat(options_.dir, "/", key);
  if (absl::StatusOr<VmTemplate> done = LoadTemplate(final_dir, key); done.ok()) return done;
  const std::string build_dir = absl::StrCat(options_.dir, "/", kBuildPrefix, key);
  // What a daemon killed during a build left (its NIC's namespace is a mount: undo it first).
  if (options_.remove_nic) options_.remove_nic(build_dir);
  RemoveAll(build_dir).IgnoreError();
  if (absl::Status s = MakeDirs(build_dir + "/export", 0700); !s.ok()) return s;
  absl::Cleanup remove_build = [&] { RemoveAll(build_dir).IgnoreError(); };
  const absl::Time start = absl::Now();
  if (absl::Status s = BootAndSave(key, shape, build_dir); !s.ok()) return s;
  VmTemplate t;
  t.key = key;
  t.shape = shape;
  t.mac = kTemplateMac;
  // Clones map the RAM file; it must never change again.
  if (chmod((build_dir + "/ram").c_str(), 0400) != 0 ||
      chmod((build_dir + "/state").c_str(), 0400) != 0) {
    return ErrnoStatus("make the template read-only", errno);
  }
  if (absl::Status s = WriteFileAtomic(build_dir + "/" + kMetaFile, MetaText(t), 0400); !s.ok()) {
    return s;
  }
  if (rename(build_dir.c_str(), final_dir.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("rename ", build_dir, " to ", final_dir), errno);
  }
  std::move(remove_build).Cancel();
  PV_LOG(kInfo) << "VM template " << key << " (" << shape.vcpus << " vCPU, " << shape.memory_mib
                << " MiB) built in " << absl::ToInt64Milliseconds(absl::Now() - start) << " ms";
  return LoadTemplate(final_dir, key);
}

absl::Status VmTemplateStore::BootAndSave(const std::string& key, const VmShape& shape,
                                          const std::string& build_dir) {
  VmSpec spec;
  spec.id = absl::StrCat(kTemplateVmIdPrefix, key);
  spec.vcpus = shape.vcpus;
  spec.memory_mib = shape.memory_mib;
  spec.kernel = options_.kernel;
  spec.initrd = options_.initrd;
  spec.state_dir = build_dir;
  spec.agent_socket = build_dir + "/agent.sock";
  spec.console_log = build_dir + "/console.log";
  // The 9p device must be there (clones need the same devices) but unmounted: QEMU refuses to
  // migrate a VM whose 9p export is mounted. The agent mounts it in SetupSandbox, in the clone.
  spec.shared_dir = build_dir + "/export";
  spec.shared_fs_transport = SharedFsTransport::k9p;
  spec.memory_file = build_dir + "/ram";
  if (!options_.make_nic) return absl::FailedPreconditionError("no NIC maker for templates");
  absl::StatusOr<VmNic> nic = options_.make_nic(build_dir);
  absl::Cleanup remove_nic = [&] {
    if (options_.remove_nic) options_.remove_nic(build_dir);
  };
  if (!nic.ok()) return WithContext(nic.status(), "template NIC");
  nic->mac = kTemplateMac;
  spec.nics.push_back(*nic);
  if (absl::Status s = hypervisor_->Create(spec); !s.ok()) return WithContext(s, "boot template");
  absl::Cleanup destroy = [&] { hypervisor_->Destroy(spec.id).IgnoreError(); };
  if (absl::Status s = options_.wait_ready(spec.agent_socket, options_.boot_timeout); !s.ok()) {
    return WithContext(s, absl::StrCat("template agent (console log ", spec.console_log, ")"));
  }
  // SaveTemplate destroys the VM whatever happens.
  std::move(destroy).Cancel();
  return WithContext(hypervisor_->SaveTemplate(spec.id, build_dir + "/state"), "save template");
}

void VmTemplateStore::RemoveStale(const std::vector<std::string>& keep) {
  DIR* d = opendir(options_.dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    bool ours = IsKeyName(name) || (absl::StartsWith(name, kBuildPrefix) &&
                                    IsKeyName(name.substr(strlen(kBuildPrefix))));
    if (!ours) continue;
    bool kept = false;
    for (const std::string& k : keep) kept = kept || name == k;
    if (!kept) stale.push_back(name);
  }
  closedir(d);
  absl::MutexLock lock(&build_mu_);  // never remove a build in progress
  for (const std::string& name : stale) {
    // Running clones keep their (unlinked) RAM file mapped; only new pods stop using it.
    PV_LOG(kInfo) << "VM templates: removing stale " << name;
    const std::string path = absl::StrCat(options_.dir, "/", name);
    if (absl::StartsWith(name, kBuildPrefix) && options_.remove_nic) options_.remove_nic(path);
    RemoveAll(path).IgnoreError();
  }
}

std::optional<VmTemplate> VmTemplateStore::Find(uint32_t vcpus, uint64_t memory_mib) {
  absl::StatusOr<ImageStamp> stamp = StampImage();
  absl::MutexLock lock(&mu_);
  if (!stamp.ok() || !built_for_.has_value() || !(*built_for_ == *stamp)) {
    if (built_for_.has_value()) {
      wanted_ = true;  // the guest image changed: rebuild in the background
      built_for_.reset();
      ready_.clear();
    }
    return std::nullopt;
  }
  const VmTemplate* best = nullptr;
  for (const VmTemplate& t : ready_) {
    if (t.shape.vcpus != vcpus || t.shape.memory_mib < memory_mib) continue;
    if (best == nullptr || t.shape.memory_mib < best->shape.memory_mib) best = &t;
  }
  if (best == nullptr) return std::nullopt;
  for (VmTemplateStatus& s : status_) {
    if (s.key == best->key) ++s.clones;
  }
  return *best;
}

std::vector<VmTemplateStatus> VmTemplateStore::Status() {
  std::vector<VmTemplateStatus> out;
  {
    absl::MutexLock lock(&mu_);
    out = status_;
    if (!built_for_.has_value()) {
      // The guest image changed since the last build: nothing is ready until the rebuild.
      for (VmTemplateStatus& s : out) {
        if (s.state == VmTemplateStatus::State::kReady) s.state = VmTemplateStatus::State::kPending;
      }
    }
  }
  for (VmTemplateStatus& s : out) {
    struct stat st;
    const std::string ram = absl::StrCat(options_.dir, "/", s.key, "/ram");
    if (s.state == VmTemplateStatus::State::kReady && stat(ram.c_str(), &st) == 0) {
      s.memory_file_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return out;
}

}  // namespace podvisor
