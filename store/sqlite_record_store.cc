#include <sqlite3.h>

#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "store/store.h"

namespace podvisor {
namespace {

class SqliteRecordStore : public RecordStore {
 public:
  explicit SqliteRecordStore(sqlite3* db) : db_(db) {}
  ~SqliteRecordStore() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (sqlite3_stmt* s : {put_, del_, get_, list_}) sqlite3_finalize(s);
    sqlite3_close(db_);
  }

  absl::Status Prepare() {
    const char* ddl =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=FULL;"
        "CREATE TABLE IF NOT EXISTS records ("
        "  kind TEXT NOT NULL, id TEXT NOT NULL, value BLOB NOT NULL,"
        "  PRIMARY KEY (kind, id)) WITHOUT ROWID;";
    if (absl::Status s = Exec(ddl); !s.ok()) return s;
    for (auto [sql, stmt] : {std::pair{"INSERT OR REPLACE INTO records(kind,id,value) VALUES(?,?,?)",
                                       &put_},
                             std::pair{"DELETE FROM records WHERE kind=? AND id=?", &del_},
                             std::pair{"SELECT value FROM records WHERE kind=? AND id=?", &get_},
                             std::pair{"SELECT id, value FROM records WHERE kind=? ORDER BY id",
                                       &list_}}) {
      if (sqlite3_prepare_v2(db_, sql, -1, stmt, nullptr) != SQLITE_OK) return Error("prepare");
    }
    return absl::OkStatus();
  }

  absl::Status Put(absl::string_view kind, absl::string_view id, absl::string_view value) override {
    return Apply({RecordWrite{std::string(kind), std::string(id), std::string(value)}});
  }

  absl::Status Delete(absl::string_view kind, absl::string_view id) override {
    return Apply({RecordWrite{std::string(kind), std::string(id), std::nullopt}});
  }

  absl::Status Apply(const std::vector<RecordWrite>& writes) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    for (const RecordWrite& w : writes) {
      sqlite3_stmt* st = w.value ? put_ : del_;
      sqlite3_reset(st);
      sqlite3_bind_text(st, 1, w.kind.data(), static_cast<int>(w.kind.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 2, w.id.data(), static_cast<int>(w.id.size()), SQLITE_TRANSIENT);
      if (w.value) {
        sqlite3_bind_blob(st, 3, w.value->data(), static_cast<int>(w.value->size()),
                          SQLITE_TRANSIENT);
      }
      if (sqlite3_step(st) != SQLITE_DONE) {
        absl::Status err = Error(absl::StrCat("write ", w.kind, "/", w.id));
        sqlite3_reset(st);
        Exec("ROLLBACK").IgnoreError();
        return err;
      }
      sqlite3_reset(st);
    }
    return Exec("COMMIT");
  }

  absl::StatusOr<std::string> Get(absl::string_view kind, absl::string_view id) override {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_reset(get_);
    sqlite3_bind_text(get_, 1, kind.data(), static_cast<int>(kind.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(get_, 2, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(get_);
    if (rc == SQLITE_DONE) {
      sqlite3_reset(get_);
      return absl::NotFoundError(absl::StrCat("no record ", kind, "/", id));
    }
    if (rc != SQLITE_ROW) {
      absl::Status err = Error("read");
      sqlite3_reset(get_);
      return err;
    }
    std::string value(static_cast<const char*>(sqlite3_column_blob(get_, 0)),
                      static_cast<size_t>(sqlite3_column_bytes(get_, 0)));
    sqlite3_reset(get_);
    return value;
  }

  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view kind) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::pair<std::string, std::string>> out;
    sqlite3_reset(list_);
    sqlite3_bind_text(list_, 1, kind.data(), static_cast<int>(kind.size()), SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(list_)) == SQLITE_ROW) {
      const char* id = reinterpret_cast<const char*>(sqlite3_column_text(list_, 0));
      const void* blob = sqlite3_column_blob(list_, 1);
      int n = sqlite3_column_bytes(list_, 1);
      out.emplace_back(id ? id : "", std::string(static_cast<const char*>(blob),
                                                 blob ? static_cast<size_t>(n) : 0));
    }
    absl::Status st = rc == SQLITE_DONE ? absl::OkStatus() : Error("list");
    sqlite3_reset(list_);
    if (!st.ok()) return st;
    return out;
  }

 private:
  absl::Status Exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string text = msg ? msg : sqlite3_errmsg(db_);
      sqlite3_free(msg);
      return absl::InternalError(absl::StrCat("store: ", sql, ": ", text));
    }
    return absl::OkStatus();
  }

  absl::Status Error(absl::string_view what) {
    return absl::InternalError(absl::StrCat("store: ", what, ": ", sqlite3_errmsg(db_)));
  }

  std::mutex mu_;
  sqlite3* db_;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* del_ = nullptr;
  sqlite3_stmt* get_ = nullptr;
  sqlite3_stmt* list_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RecordStore>> RecordStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("open store ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 5000);
  auto store = std::make_unique<SqliteRecordStore>(db);
  if (absl::Status s = store->Prepare(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("open store ", path, ": ", s.message()));
  }
  return store;
}

}  // namespace podvisor
