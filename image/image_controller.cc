#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/metrics.h"
#include "image/content_store.h"
#include "image/digest.h"
#include "image/image_service.h"
#include "image/pull_control.h"
#include "image/reference.h"

namespace podvisor {
namespace {

constexpr char kImageKind[] = "image";

absl::Status Context(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

void AddUnique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

bool AllHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return !s.empty();
}

class ImageControllerImpl;

// Blobs and layers a pull is using: GC leaves them alone until the pull ends.
class PullHolds {
 public:
  explicit PullHolds(ImageControllerImpl* c) : c_(c) {}
  ~PullHolds();
  void Blob(const std::string& digest);
  void Layer(const std::string& diff_id);

 private:
  ImageControllerImpl* c_;
  std::vector<std::string> blobs_, layers_;
};

class ImageControllerImpl : public ImageController {
 public:
  ImageControllerImpl(Options options, RecordStore* records)
      : options_(std::move(options)),
        content_(options_.root_dir + "/content"),
        client_(std::make_shared<RegistryClient>(options_.registry)),
        store_(records, kImageKind),
        download_slots_(static_cast<int>(options_.registry.max_concurrent_downloads)),
        unpack_count_(std::max(1u, std::thread::hardware_concurrency())),
        unpack_slots_(static_cast<int>(unpack_count_)) {}

  absl::Status Init() {
    for (const std::string& p : options_.registry.pinned_images) {
      absl::StatusOr<ImageReference> ref = ParseImageReference(p);
      if (!ref.ok()) return Context(ref.status(), "registry.pinned_images");
      pinned_.insert(ref->String());
    }
    if (absl::Status s = MakeDirs(options_.root_dir, 0700); !s.ok()) return s;
    if (absl::Status s = content_.Init(); !s.ok()) return s;
    if (absl::Status s = MakeDirs(LayersDir(), 0700); !s.ok()) return s;
    // Interrupted unpacks leave only temp dirs: start them over.
    if (absl::Status s = RemoveAll(TmpDir()); !s.ok()) return s;
    if (absl::Status s = MakeDirs(TmpDir(), 0700); !s.ok()) return s;
    std::vector<std::string> skipped;
    if (absl::Status s = store_.Load(&skipped); !s.ok()) return s;
    for (const std::string& why : skipped) PV_LOG(kError) << "unreadable image record: " << why;
    return GarbageCollect();
  }

  absl::StatusOr<ImageRecord> Pull(absl::string_view text,
                                   const RegistryCredentials& creds) override {
    return PullCancellable(text, creds, nullptr);
  }

  absl::StatusOr<ImageRecord> PullCancellable(absl::string_view text,
                                              const RegistryCredentials& creds,
                                              const CancelCheck& cancelled) override {
    absl::StatusOr<ImageReference> ref = ParseImageReference(text);
    if (!ref.ok()) return ref.status();
    absl::StatusOr<ImageRecord> r = DoPull(*ref, creds, cancelled);
    return r.ok() ? r : Context(r.status(), absl::StrCat("pull ", ref->String()));
  }

  absl::StatusOr<ImageRecord> Get(absl::string_view image) const override {
    absl::StatusOr<std::string> id = Resolve(image);
    if (!id.ok()) return id.status();
    absl::StatusOr<ImageRecord> r = store_.Get(*id);
    if (r.ok()) MarkPinned(*r);
    return r;
  }

  void SetRegistryConfig(const RegistryConfig& registry) override {
    auto client = std::make_shared<RegistryClient>(registry);
    absl::MutexLock lock(&client_mu_);
    client_ = std::move(client);
  }

  std::vector<ImageRecord> List(absl::string_view filter) const override {
    if (filter.empty()) {
      std::vector<ImageRecord> all = store_.List();
      for (ImageRecord& r : all) MarkPinned(r);
      return all;
    }
    std::vector<ImageRecord> out;
    absl::StatusOr<ImageRecord> r = Get(filter);
    if (r.ok()) out.push_back(*r);
    return out;
  }

  absl::StatusOr<std::string> VerboseInfo(const ImageRecord& image) const override {
    nlohmann::json layers = nlohmann::json::array();
    for (const ImageLayer& l : image.metadata.layers) {
      layers.push_back({{"digest", l.digest},
                        {"mediaType", l.media_type},
                        {"size", l.size},
                        {"diffID", l.diff_id},
                        {"erofs", LayerPath(l.diff_id)}});
    }
    nlohmann::json info = {{"id", image.metadata.id},
                           {"manifestDigest", image.metadata.manifest_digest},
                           {"repoTags", image.status.repo_tags},
                           {"repoDigests", image.status.repo_digests},
                           {"size", image.metadata.size},
                           {"pinned", image.status.pinned},
                           {"layers", layers}};
    absl::StatusOr<std::string> config = content_.Read(image.metadata.id, kMaxConfigBytes);
    if (config.ok()) {
      nlohmann::json spec = nlohmann::json::parse(*config, nullptr, false);
      if (!spec.is_discarded()) info["imageSpec"] = spec;
    }
    return info.dump();
  }

  absl::Status Remove(absl::string_view image) override {
    absl::Status s = RemoveNames(image);
    if (!s.ok()) return Context(s, absl::StrCat("remove image ", image));
    return Context(GarbageCollect(), absl::StrCat("remove image ", image));
  }

  void SetInUseCheck(std::function<bool(const std::string&)> in_use) override {
    absl::MutexLock lock(&gc_mu_);
    in_use_ = std::move(in_use);
  }

  absl::Status GarbageCollect() override;

  absl::StatusOr<std::vector<std::string>> LayerImages(absl::string_view id) const override {
    absl::StatusOr<ImageRecord> r = Get(id);
    if (!r.ok()) return r.status();
    std::vector<std::string> out;
    for (const ImageLayer& l : r->metadata.layers) {
      std::string path = LayerPath(l.diff_id);
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) {
        return absl::FailedPreconditionError(absl::StrCat("image ", r->metadata.id,
                                                          ": layer image ", path,
                                                          " is missing (pull the image again)"));
      }
      out.push_back(std::move(path));
    }
    return out;
  }

  absl::StatusOr<ImageFsUsage> FsUsage() const override;

 private:
  friend class PullHolds;

  // Pinned by configuration (registry.pinned_images): decided when read, so that a config
  // change applies to images already stored.
  void MarkPinned(ImageRecord& r) const {
    for (const auto* names : {&r.status.repo_tags, &r.status.repo_digests}) {
      for (const std::string& n : *names) r.status.pinned = r.status.pinned || pinned_.contains(n);
    }
  }

  std::string LayersDir() const { return options_.root_dir + "/layers"; }
  size_t PullWorkers() const {
    return static_cast<size_t>(options_.registry.max_concurrent_downloads) + unpack_count_;
  }
  std::string TmpDir() const { return options_.root_dir + "/tmp"; }
  std::string LayerPath(absl::string_view diff_id) const {
    return absl::StrCat(LayersDir(), "/", DigestHex(diff_id), ".erofs");
  }
  bool HasLayer(absl::string_view diff_id) const {
    struct stat st {};
    return ::stat(LayerPath(diff_id).c_str(), &st) == 0;
  }

  absl::StatusOr<std::string> Resolve(absl::string_view text) const;
  absl::StatusOr<ImageRecord> DoPull(const ImageReference& ref, const RegistryCredentials& creds,
                                     const CancelCheck& cancelled);
  absl::StatusOr<FetchedManifest> ResolveManifest(RegistrySession& session,
                                                  const ImageReference& ref, PullHolds& holds,
                                                  std::vector<std::string>& blobs,
                                                  std::string& top_digest);
  absl::Status EnsureBlob(RegistrySession& session, const Descriptor& d,
                          const std::function<void(int64_t)>& progress,
                          const CancelCheck& cancelled);
  absl::Status CheckFreeSpace(const Descriptor& d) const;
  absl::Status EnsureLayer(const ImageLayer& layer, const CancelCheck& cancelled);
  absl::Status PullLayer(RegistrySession& session, const ImageLayer& layer, PullProgress& progress,
                         const CancelCheck& cancelled);
  absl::Status PullLayers(RegistrySession& session, const std::vector<ImageLayer>& layers,
                          PullProgress& progress, PullHolds& holds, const CancelCheck& cancelled);
  absl::StatusOr<ImageRecord> Commit(const ImageReference& ref, ImageMetadata metadata,
                                     const std::string& top_digest,
                                     const std::vector<std::string>& blobs);
  absl::Status RemoveNames(absl::string_view image);

  const Options options_;
  std::set<std::string> pinned_;  // normalised references
  ContentStore content_;
  // Replaced whole by SetRegistryConfig; a pull keeps the client it started with.
  mutable absl::Mutex client_mu_;
  std::shared_ptr<RegistryClient> client_ ABSL_GUARDED_BY(client_mu_);
  ImageStore store_;
  Semaphore download_slots_;
  const unsigned unpack_count_;
  Semaphore unpack_slots_;
  SingleFlight blob_flights_;
  SingleFlight layer_flights_;
  std::atomic<uint64_t> tmp_counter_{0};

  // Serialises changes of names (tags move between images).
  absl::Mutex names_mu_;

  // GC against pulls: what running pulls hold, counted.
  mutable absl::Mutex gc_mu_;
  std::map<std::string, int> held_blobs_ ABSL_GUARDED_BY(gc_mu_);
  std::map<std::string, int> held_layers_ ABSL_GUARDED_BY(gc_mu_);
  std::function<bool(const std::string&)> in_use_ ABSL_GUARDED_BY(gc_mu_);
};

PullHolds::~PullHolds() {
  absl::MutexLock lock(&c_->gc_mu_);
  for (const std::string& b : blobs_) {
    if (--c_->held_blobs_[b] == 0) c_->held_blobs_.erase(b);
  }
  for (const std::string& l : layers_) {
    if (--c_->held_layers_[l] == 0) c_->held_layers_.erase(l);
  }
}

void PullHolds::Blob(const std::string& digest) {
  absl::MutexLock lock(&c_->gc_mu_);
  ++c_->held_blobs_[digest];
  blobs_.push_back(digest);
}

void PullHolds::Layer(const std::string& diff_id) {
  absl::MutexLock lock(&c_->gc_mu_);
  ++c_->held_layers_[diff_id];
  layers_.push_back(diff_id);
}

absl::StatusOr<std::string> ImageControllerImpl::Resolve(absl::string_view text) const {
  if (text.empty()) return absl::InvalidArgumentError("image name is empty");
  absl::string_view hex = absl::StripPrefix(text, kSha256Prefix);
  if (IsHex64(hex)) {
    std::string id = absl::StrCat(kSha256Prefix, hex);
    if (store_.Get(id).ok()) return id;
  }
  std::vector<ImageRecord> all = store_.List();
  if (absl::StatusOr<ImageReference> ref = ParseImageReference(text); ref.ok()) {
    const std::string name = ref->String();
    for (const ImageRecord& r : all) {
      const auto& names = ref->digest.empty() ? r.status.repo_tags : r.status.repo_digests;
      if (std::find(names.begin(), names.end(), name) != names.end()) return r.metadata.id;
    }
  }
  if (hex.size() >= 3 && AllHex(hex)) {
    std::optional<std::string> found;
    for (const ImageRecord& r : all) {
      if (absl::StartsWith(DigestHex(r.metadata.id), hex)) {
        if (found) {
          return absl::InvalidArgumentError(
              absl::StrCat("image id prefix ", text, " is ambiguous"));
        }
        found = r.metadata.id;
      }
    }
    if (found) return *found;
  }
  return absl::NotFoundError(absl::StrCat("image \"", text, "\" not found"));
}

absl::StatusOr<FetchedManifest> ImageControllerImpl::ResolveManifest(
    RegistrySession& session, const ImageReference& ref, PullHolds& holds,
    std::vector<std::string>& blobs, std::string& top_digest) {
  absl::StatusOr<FetchedManifest> top = session.GetManifest(ref.Object(), std::nullopt);
  if (!top.ok()) return Context(top.status(), "fetch manifest");
  top_digest = top->digest;
  holds.Blob(top->digest);
  if (absl::Status s = content_.Put(top->digest, top->body); !s.ok()) return s;
  blobs.push_back(top->digest);
  absl::StatusOr<ManifestDocument> doc = ParseManifest(top->body, top->content_type);
  if (!doc.ok()) return doc.status();
  if (!doc->is_index) return top;
  absl::StatusOr<Descriptor> chosen = SelectPlatform(*doc, options_.architecture);
  if (!chosen.ok()) return chosen.status();
  holds.Blob(chosen->digest);
  blobs.push_back(chosen->digest);
  FetchedManifest m;
  if (content_.Has(chosen->digest)) {
    absl::StatusOr<std::string> body = content_.Read(chosen->digest, kMaxManifestBytes);
    if (!body.ok()) return body.status();
    m = {*body, chosen->media_type, chosen->digest};
  } else {
    absl::StatusOr<FetchedManifest> got = session.GetManifest(chosen->digest, *chosen);
    if (!got.ok()) return Context(got.status(), "fetch platform manifest");
    if (absl::Status s = content_.Put(got->digest, got->body); !s.ok()) return s;
    m = std::move(*got);
  }
  if (m.content_type.empty() || m.content_type == "application/json") {
    m.content_type = chosen->media_type;
  }
  return m;
}

absl::Status ImageControllerImpl::EnsureBlob(RegistrySession& session, const Descriptor& d,
                                             const std::function<void(int64_t)>& progress,
                                             const CancelCheck& cancelled) {
  return blob_flights_.Do(
      d.digest,
      [&]() -> absl::Status {
        if (content_.Has(d.digest)) return absl::OkStatus();
        if (absl::Status s = CheckFreeSpace(d); !s.ok()) return s;
        absl::StatusOr<std::unique_ptr<ContentStore::Writer>> w = content_.NewWriter();
        if (!w.ok()) return w.status();
        return Context(session.FetchBlob(d, **w, progress), absl::StrCat("fetch blob ", d.digest));
      },
      cancelled);
}

// A blob's declared size is believed only when the store's filesystem can hold it and still
// keep registry.min_free_disk_bytes free (the writer never accepts more than that size).
absl::Status ImageControllerImpl::CheckFreeSpace(const Descriptor& d) const {
  struct statvfs st {};
  if (::statvfs(content_.root().c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("statvfs ", content_.root()), errno);
  }
  const uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  const uint64_t reserve = static_cast<uint64_t>(options_.registry.min_free_disk_bytes);
  const uint64_t need = static_cast<uint64_t>(d.size);
  if (need > free_bytes || free_bytes - need < reserve) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "blob ", d.digest, " declares ", d.size, " bytes but the image store has ", free_bytes,
        " bytes free and keeps ", reserve, " free (registry.min_free_disk_bytes)"));
  }
  return absl::OkStatus();
}

absl::Status ImageControllerImpl::EnsureLayer(const ImageLayer& layer,
                                              const CancelCheck& cancelled) {
  return layer_flights_.Do(
      layer.diff_id,
      [&]() -> absl::Status {
        if (HasLayer(layer.diff_id)) return absl::OkStatus();
        const std::string tmp =
            absl::StrCat(TmpDir(), "/unpack-", DigestHex(layer.diff_id).substr(0, 12), "-",
                         tmp_counter_.fetch_add(1));
        absl::Cleanup remove_tmp = [&tmp] { RemoveAll(tmp).IgnoreError(); };
        if (absl::Status s = MakeDirs(tmp + "/tree", 0755); !s.ok()) return s;
        const absl::Time start = absl::Now();
        absl::StatusOr<UnpackResult> r =
            UnpackLayerFile(content_.BlobPath(layer.digest), tmp + "/tree", options_.limits);
        if (!r.ok()) return Context(r.status(), absl::StrCat("unpack layer ", layer.digest));
        if (r->diff_id != layer.diff_id) {
          return absl::DataLossError(absl::StrCat("layer ", layer.digest, " uncompresses to ",
                                                  r->diff_id, " but the image config says ",
                                                  layer.diff_id, " (digest mismatch)"));
        }
        const absl::Time unpacked = absl::Now();
        if (absl::Status s = BuildErofsImage(tmp + "/tree", tmp + "/layer.erofs"); !s.ok()) {
          return Context(s, absl::StrCat("build erofs image of layer ", layer.diff_id));
        }
        int fd = ::open((tmp + "/layer.erofs").c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
          ::fsync(fd);
          ::close(fd);
        }
        if (::rename((tmp + "/layer.erofs").c_str(), LayerPath(layer.diff_id).c_str()) != 0) {
          return ErrnoStatus(absl::StrCat("rename layer image ", LayerPath(layer.diff_id)), errno);
        }
        PV_LOG(kDebug) << "layer " << layer.diff_id << ": " << r->tar_bytes << " bytes, "
                       << r->entries << " entries, unpacked in "
                       << absl::ToDoubleMilliseconds(unpacked - start) << " ms, erofs in "
                       << absl::ToDoubleMilliseconds(absl::Now() - unpacked) << " ms";
        return absl::OkStatus();
      },
      cancelled);
}

absl::Status ImageControllerImpl::PullLayer(RegistrySession& session, const ImageLayer& l,
                                            PullProgress& progress, const CancelCheck& cancelled) {
  if (content_.Has(l.digest) && HasLayer(l.diff_id)) {
    progress.LayerDone();
    return absl::OkStatus();
  }
  // Downloads and unpacks are bounded apart: a layer being unpacked does not hold back the
  // next download.
  Descriptor d{l.media_type, l.digest, l.size, std::nullopt};
  if (!download_slots_.Acquire(cancelled)) return PullCancelledError();
  absl::Status s = EnsureBlob(
      session, d,
      [&](int64_t n) {
        progress.AddBytes(n);
        metrics::AddImagePullBytes(n);
      },
      cancelled);
  download_slots_.Release();
  if (!s.ok()) return s;
  if (!unpack_slots_.Acquire(cancelled)) return PullCancelledError();
  s = EnsureLayer(l, cancelled);
  unpack_slots_.Release();
  if (s.ok()) progress.LayerDone();
  return s;
}

// A bounded pool per pull: enough workers to keep every download slot and every unpack slot
// busy, never one thread per layer. The first failure stops the workers taking new layers.
absl::Status ImageControllerImpl::PullLayers(RegistrySession& session,
                                             const std::vector<ImageLayer>& layers,
                                             PullProgress& progress, PullHolds& holds,
                                             const CancelCheck& cancelled) {
  for (const ImageLayer& l : layers) {
    holds.Blob(l.digest);
    holds.Layer(l.diff_id);
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<absl::Status> results(layers.size());
  auto stop = [&] { return failed.load() || (cancelled && cancelled()); };
  auto work = [&] {
    for (size_t i = next.fetch_add(1); i < layers.size(); i = next.fetch_add(1)) {
      if (stop()) return;
      results[i] = PullLayer(session, layers[i], progress, stop);
      if (!results[i].ok()) failed = true;
    }
  };
  const size_t workers = std::min<size_t>(layers.size(), PullWorkers());
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t i = 0; i < workers; ++i) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
  if (cancelled && cancelled()) return PullCancelledError();
  // The first real failure, not the CANCELLED of a layer stopped because of it.
  for (const absl::Status& s : results) {
    if (!s.ok() && !absl::IsCancelled(s)) return s;
  }
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageRecord> ImageControllerImpl::DoPull(const ImageReference& ref,
                                                        const RegistryCredentials& creds,
                                                        const CancelCheck& cancelled) {
  // By digest and already whole: nothing to ask the registry.
  if (!ref.digest.empty()) {
    absl::StatusOr<ImageRecord> have = Get(ref.String());
    if (have.ok() && LayerImages(have->metadata.id).ok()) return have;
  }
  PullHolds holds(this);
  std::shared_ptr<RegistryClient> client;
  {
    absl::MutexLock lock(&client_mu_);
    client = client_;
  }
  std::unique_ptr<RegistrySession> session = client->NewSession(ref, creds, cancelled);
  std::vector<std::string> blobs;
  std::string top_digest;
  absl::StatusOr<FetchedManifest> manifest =
      ResolveManifest(*session, ref, holds, blobs, top_digest);
  if (!manifest.ok()) return manifest.status();
  absl::StatusOr<ManifestDocument> doc = ParseManifest(manifest->body, manifest->content_type);
  if (!doc.ok()) return doc.status();
  if (doc->is_index) return absl::InvalidArgumentError("nested image indexes are not supported");
  if (static_cast<int64_t>(doc->layers.size()) > options_.registry.max_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest ", manifest->digest, " has ", doc->layers.size(),
                     " layers, more than the limit of ", options_.registry.max_layers,
                     " (registry.max_layers)"));
  }

  holds.Blob(doc->config.digest);
  blobs.push_back(doc->config.digest);
  if (absl::Status s = EnsureBlob(*session, doc->config, nullptr, cancelled); !s.ok()) {
    return Context(s, "image config");
  }
  absl::StatusOr<std::string> config_bytes = content_.Read(doc->config.digest, kMaxConfigBytes);
  if (!config_bytes.ok()) return config_bytes.status();
  absl::StatusOr<ImageConfig> config = ParseImageConfig(*config_bytes);
  if (!config.ok()) return config.status();
  if (config->diff_ids.size() != doc->layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat("manifest has ", doc->layers.size(),
                                                   " layers but the config lists ",
                                                   config->diff_ids.size(), " diff_ids"));
  }

  ImageMetadata md;
  md.id = doc->config.digest;
  md.manifest_digest = manifest->digest;
  md.size = static_cast<int64_t>(manifest->body.size()) + doc->config.size;
  int64_t layer_bytes = 0;
  for (size_t i = 0; i < doc->layers.size(); ++i) {
    const Descriptor& d = doc->layers[i];
    md.layers.push_back({d.digest, d.media_type, d.size, config->diff_ids[i]});
    blobs.push_back(d.digest);
    layer_bytes += d.size;
  }
  md.size += layer_bytes;
  std::string user = config->user.substr(0, config->user.find(':'));
  int64_t uid = 0;
  if (!user.empty() && absl::SimpleAtoi(user, &uid) && uid >= 0) {
    md.uid = uid;
  } else {
    md.username = user;
  }
  md.config = std::move(*config);
  md.pulled_at_ns = absl::ToUnixNanos(absl::Now());

  PullProgress progress(ref.String(), layer_bytes, md.layers.size());
  progress.Log("start");
  if (absl::Status s = PullLayers(*session, md.layers, progress, holds, cancelled); !s.ok()) {
    return s;
  }
  progress.Log("done");
  return Commit(ref, std::move(md), top_digest, blobs);
}

absl::StatusOr<ImageRecord> ImageControllerImpl::Commit(const ImageReference& ref,
                                                        ImageMetadata metadata,
                                                        const std::string& top_digest,
                                                        const std::vector<std::string>& blobs) {
  absl::MutexLock lock(&names_mu_);
  const std::string tag = ref.digest.empty() ? ref.String() : "";
  const std::string digest_ref = absl::StrCat(ref.Name(), "@", top_digest);
  const std::string id = metadata.id;
  if (!tag.empty()) {
    for (const ImageRecord& other : store_.List()) {
      if (other.metadata.id == id) continue;
      const auto& tags = other.status.repo_tags;
      if (std::find(tags.begin(), tags.end(), tag) == tags.end()) continue;
      absl::StatusOr<ImageRecord> u = store_.Update(other.metadata.id, [&](ImageNames& n) {
        n.repo_tags.erase(std::remove(n.repo_tags.begin(), n.repo_tags.end(), tag),
                          n.repo_tags.end());
        return absl::OkStatus();
      });
      if (!u.ok()) return u.status();
    }
  }
  auto add_names = [&](ImageNames& n) {
    if (!tag.empty()) AddUnique(n.repo_tags, tag);
    AddUnique(n.repo_digests, digest_ref);
    for (const std::string& b : blobs) AddUnique(n.blobs, b);
    return absl::OkStatus();
  };
  if (store_.Get(id).ok()) return store_.Update(id, add_names);
  ImageNames names;
  add_names(names).IgnoreError();
  if (absl::Status s = store_.Add({std::move(metadata), std::move(names)}); !s.ok()) return s;
  return store_.Get(id);
}

absl::Status ImageControllerImpl::RemoveNames(absl::string_view image) {
  absl::MutexLock lock(&names_mu_);
  absl::StatusOr<std::string> id = Resolve(image);
  if (absl::IsNotFound(id.status())) return absl::OkStatus();
  if (!id.ok()) return id.status();
  absl::StatusOr<ImageRecord> r = store_.Get(*id);
  if (!r.ok()) return absl::OkStatus();
  absl::StatusOr<ImageReference> ref = ParseImageReference(image);
  const bool by_tag = ref.ok() && ref->digest.empty() &&
                      std::find(r->status.repo_tags.begin(), r->status.repo_tags.end(),
                                ref->String()) != r->status.repo_tags.end();
  if (by_tag && r->status.repo_tags.size() > 1) {
    const std::string tag = ref->String();
    return store_
        .Update(*id,
                [&](ImageNames& n) {
                  n.repo_tags.erase(std::remove(n.repo_tags.begin(), n.repo_tags.end(), tag),
                                    n.repo_tags.end());
                  return absl::OkStatus();
                })
        .status();
  }
  // The whole image: drop its names; GC deletes the record unless a container uses it.
  absl::StatusOr<ImageRecord> u = store_.Update(*id, [](ImageNames& n) {
    n.repo_tags.clear();
    n.repo_digests.clear();
    return absl::OkStatus();
  });
  PV_LOG(kInfo) << "image " << *id << " removed (" << image << ")";
  return u.status();
}

absl::Status ImageControllerImpl::GarbageCollect() {
  absl::MutexLock lock(&gc_mu_);
  std::set<std::string> blobs, layers;
  for (const auto& [b, n] : held_blobs_) blobs.insert(b);
  for (const auto& [l, n] : held_layers_) layers.insert(l);
  for (const ImageRecord& r : store_.List()) {
    const bool nameless = r.status.repo_tags.empty() && r.status.repo_digests.empty();
    if (nameless && !(in_use_ && in_use_(r.metadata.id))) {
      if (absl::Status s = store_.Remove(r.metadata.id); !s.ok()) return s;
      continue;
    }
    blobs.insert(r.status.blobs.begin(), r.status.blobs.end());
    blobs.insert(r.metadata.id);
    for (const ImageLayer& l : r.metadata.layers) {
      blobs.insert(l.digest);
      layers.insert(l.diff_id);
    }
  }
  int removed_blobs = 0, removed_layers = 0;
  for (const std::string& d : content_.List()) {
    if (blobs.contains(d)) continue;
    if (absl::Status s = content_.Delete(d); !s.ok()) return s;
    ++removed_blobs;
  }
  if (DIR* dir = ::opendir(LayersDir().c_str())) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(dir)) names.push_back(e->d_name);
    ::closedir(dir);
    for (const std::string& n : names) {
      if (!absl::EndsWith(n, ".erofs")) continue;
      std::string diff_id = absl::StrCat(kSha256Prefix, n.substr(0, n.size() - 6));
      if (layers.contains(diff_id)) continue;
      if (::unlink((LayersDir() + "/" + n).c_str()) != 0 && errno != ENOENT) {
        return ErrnoStatus(absl::StrCat("remove layer image ", n), errno);
      }
      ++removed_layers;
    }
  }
  if (removed_blobs + removed_layers > 0) {
    PV_LOG(kInfo) << "image GC: removed " << removed_blobs << " blobs and " << removed_layers
                  << " layer images";
  }
  return absl::OkStatus();
}

// Sums blocks and inodes below `path` without following symlinks or crossing devices.
void DiskUsage(const std::string& path, dev_t dev, uint64_t& bytes, uint64_t& inodes) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || st.st_dev != dev) return;
  bytes += static_cast<uint64_t>(st.st_blocks) * 512;
  inodes += 1;
  if (!S_ISDIR(st.st_mode)) return;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(dir);
  for (const std::string& n : names) DiskUsage(path + "/" + n, dev, bytes, inodes);
}

absl::StatusOr<ImageFsUsage> ImageControllerImpl::FsUsage() const {
  struct stat st {};
  if (::stat(options_.root_dir.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("stat ", options_.root_dir), errno);
  }
  ImageFsUsage u;
  u.timestamp_ns = absl::ToUnixNanos(absl::Now());
  u.mountpoint = options_.root_dir;
  DiskUsage(options_.root_dir, st.st_dev, u.used_bytes, u.inodes_used);
  return u;
}

}  // namespace

std::string DigestedReference(const ImageRecord& image, absl::string_view requested) {
  const std::vector<std::string>& digests = image.status.repo_digests;
  if (digests.empty()) return image.metadata.id;
  absl::StatusOr<ImageReference> ref = ParseImageReference(requested);
  if (ref.ok()) {
    const std::string exact = ref->String();
    if (!ref->digest.empty() && std::find(digests.begin(), digests.end(), exact) != digests.end()) {
      return exact;
    }
    const std::string repo = absl::StrCat(ref->Name(), "@");
    for (const std::string& d : digests) {
      if (absl::StartsWith(d, repo)) return d;
    }
  }
  return digests.front();
}

absl::StatusOr<std::unique_ptr<ImageController>> ImageController::Create(Options options,
                                                                         RecordStore* records) {
  auto c = std::make_unique<ImageControllerImpl>(std::move(options), records);
  if (absl::Status s = c->Init(); !s.ok()) return Context(s, "image store");
  return c;
}

}  // namespace podvisor
