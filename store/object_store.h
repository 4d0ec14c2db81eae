#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "store/store.h"

namespace podvisor {

// An object held by an ObjectStore: metadata fixed at creation, status changed only through
// ObjectStore::Update.
template <typename Metadata, typename Status>
struct StoredObject {
  Metadata metadata;
  Status status;
};

// The in-memory index of one kind of object (sandboxes, containers, images) over a RecordStore.
//
// Metadata must have `std::string id` and `std::string name` members (the name is unique among
// live objects; an empty name is not indexed), and both Metadata and Status must convert to and
// from nlohmann::json (to_json/from_json found by ADL). Every change is durable in the
// RecordStore before the call returns; the in-memory copy changes only after the write succeeded.
// Each record carries the schema version it was written with ("schema"; none: version 0, before
// versions were kept): a record of a newer schema than this build reads is skipped, not misread.
// An observer (SetObserver) sees every change after it is durable, in the order of the changes.
// Thread-safe.
template <typename Metadata, typename Status>
class ObjectStore {
 public:
  using Object = StoredObject<Metadata, Status>;

  // The schema of the records this build writes. Raise it when a change of Metadata or Status
  // would make an older build misread a record; fields added with defaults do not need it.
  static constexpr int kSchemaVersion = 1;

  // Called with the object before a change (null for Add) and after it (null for Remove), under
  // the store's lock, so calls come in the order of the changes. It must not call the store and
  // must not block (hand the change on, as ContainerEventBus does). Load() calls it not.
  using Observer = std::function<void(const Object* before, const Object* after)>;

  ObjectStore(RecordStore* records, std::string kind) : records_(records), kind_(std::move(kind)) {}

  void SetObserver(Observer observer) {
    absl::MutexLock lock(&mu_);
    observer_ = std::move(observer);
  }

  // Loads every record of this kind. Records that do not parse are reported and skipped.
  absl::Status Load(std::vector<std::string>* skipped = nullptr) {
    auto rows = records_->List(kind_);
    if (!rows.ok()) return rows.status();
    absl::MutexLock lock(&mu_);
    objects_.clear();
    names_.clear();
    for (auto& [id, value] : *rows) {
      try {
        nlohmann::json j = nlohmann::json::parse(value);
        const int schema = j.value("schema", 0);
        if (schema > kSchemaVersion) {
          if (skipped) {
            skipped->push_back(absl::StrCat(kind_, "/", id, ": schema ", schema,
                                            " is newer than this build reads (", kSchemaVersion,
                                            ")"));
          }
          continue;
        }
        Object o{j.at("metadata").get<Metadata>(), j.at("status").get<Status>()};
        if (!o.metadata.name.empty()) names_[o.metadata.name] = id;
        objects_.emplace(id, std::move(o));
      } catch (const std::exception& e) {
        if (skipped) skipped->push_back(absl::StrCat(kind_, "/", id, ": ", e.what()));
      }
    }
    return absl::OkStatus();
  }

  // ALREADY_EXISTS when the id or the name is taken (the message names the holder).
  absl::Status Add(Object object) {
    absl::MutexLock lock(&mu_);
    const std::string id = object.metadata.id;
    if (objects_.contains(id)) {
      return absl::AlreadyExistsError(absl::StrCat(kind_, " id ", id, " already exists"));
    }
    if (!object.metadata.name.empty()) {
      auto it = names_.find(object.metadata.name);
      if (it != names_.end()) {
        return absl::AlreadyExistsError(absl::StrCat(kind_, " name \"", object.metadata.name,
                                                     "\" is reserved by ", it->second));
      }
    }
    if (absl::Status s = records_->Put(kind_, id, Encode(object)); !s.ok()) return s;
    if (!object.metadata.name.empty()) names_[object.metadata.name] = id;
    auto added = objects_.emplace(id, std::move(object)).first;
    if (observer_) observer_(nullptr, &added->second);
    return absl::OkStatus();
  }

  // Applies `fn` to a copy of the status; if it returns OK the new status is written durably and
  // then published. NOT_FOUND for an unknown id.
  absl::StatusOr<Object> Update(const std::string& id,
                                const std::function<absl::Status(Status&)>& fn) {
    absl::MutexLock lock(&mu_);
    auto it = objects_.find(id);
    if (it == objects_.end()) return NotFound(id);
    Object copy = it->second;
    if (absl::Status s = fn(copy.status); !s.ok()) return s;
    if (absl::Status s = records_->Put(kind_, id, Encode(copy)); !s.ok()) return s;
    if (observer_) observer_(&it->second, &copy);
    it->second = copy;
    return copy;
  }

  // Removing an unknown id is OK.
  absl::Status Remove(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto it = objects_.find(id);
    if (it == objects_.end()) return absl::OkStatus();
    if (absl::Status s = records_->Delete(kind_, id); !s.ok()) return s;
    if (!it->second.metadata.name.empty()) names_.erase(it->second.metadata.name);
    if (observer_) observer_(&it->second, nullptr);
    objects_.erase(it);
    return absl::OkStatus();
  }

  absl::StatusOr<Object> Get(const std::string& id) const {
    absl::MutexLock lock(&mu_);
    auto it = objects_.find(id);
    if (it == objects_.end()) return NotFound(id);
    return it->second;
  }

  // Resolves a full id or a unique prefix of one. NOT_FOUND when none matches,
  // INVALID_ARGUMENT when the prefix is ambiguous.
  absl::StatusOr<std::string> Resolve(const std::string& id_or_prefix) const {
    absl::MutexLock lock(&mu_);
    if (id_or_prefix.empty()) return absl::InvalidArgumentError(absl::StrCat(kind_, " id is empty"));
    if (objects_.contains(id_or_prefix)) return id_or_prefix;
    std::optional<std::string> found;
    for (auto it = objects_.lower_bound(id_or_prefix);
         it != objects_.end() && absl::StartsWith(it->first, id_or_prefix); ++it) {
      if (found) {
        return absl::InvalidArgumentError(
            absl::StrCat(kind_, " id prefix ", id_or_prefix, " is ambiguous"));
      }
      found = it->first;
    }
    if (!found) return NotFound(id_or_prefix);
    return *found;
  }

  std::vector<Object> List() const {
    absl::MutexLock lock(&mu_);
    std::vector<Object> out;
    out.reserve(objects_.size());
    for (const auto& [id, o] : objects_) out.push_back(o);
    return out;
  }

  size_t Size() const {
    absl::MutexLock lock(&mu_);
    return objects_.size();
  }

 private:
  static std::string Encode(const Object& o) {
    nlohmann::json j;
    j["schema"] = kSchemaVersion;
    j["metadata"] = o.metadata;
    j["status"] = o.status;
    return j.dump();
  }

  absl::Status NotFound(const std::string& id) const {
    return absl::NotFoundError(absl::StrCat(kind_, " ", id, " not found"));
  }

  RecordStore* const records_;
  const std::string kind_;
  mutable absl::Mutex mu_;
  std::map<std::string, Object> objects_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> names_ ABSL_GUARDED_BY(mu_);  // name -> id
  Observer observer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace podvisor
