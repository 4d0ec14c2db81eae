#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "image/auth_challenge.h"
#include "image/content_store.h"
#include "image/manifest.h"
#include "image/reference.h"

namespace podvisor {

// The CRI AuthConfig fields. Never logged, never put in an error message.
struct RegistryCredentials {
  std::string username;
  std::string password;
  std::string auth;            // base64("username:password")
  std::string identity_token;  // an OAuth2 refresh token for the token server
  std::string registry_token;  // a bearer token sent as is
  // The registry these are for (kubelet fills it from its docker config): when set, they are
  // sent only to that host, never to a mirror elsewhere. Empty: every endpoint of the pull.
  std::string server_address;
};

// Where a registry's API is served: a mirror or the upstream registry.
struct RegistryEndpoint {
  std::string base_url;  // scheme://host[:port], no trailing slash
  bool mirror = false;
  bool insecure_skip_verify = false;
  std::string ca_file;
};

// The endpoints for `domain`, in the order they are tried: the configured mirrors, then the
// registry itself (docker.io is served by registry-1.docker.io). The registry is reached over
// HTTPS unless its host entry says plain_http, or it is on loopback without TLS settings.
std::vector<RegistryEndpoint> RegistryEndpoints(const RegistryConfig& config,
                                                absl::string_view domain);

// A manifest or index as fetched: its bytes verified against the digest asked for (and the
// Docker-Content-Digest header when fetched by tag).
struct FetchedManifest {
  std::string body;
  std::string content_type;
  std::string digest;
};

class RegistryClient;

// Asked during transfers and waits: true once the caller no longer wants the result (its gRPC
// client hung up or its deadline passed). Empty: never.
using CancelCheck = std::function<bool()>;

// One repository on one registry with one set of credentials: caches the bearer tokens it
// obtains and remembers the endpoint that answered. Thread-safe (layers download in parallel).
class RegistrySession {
 public:
  // `reference` is fetched by tag or digest (ref.Object()); `expected` checks digest and size.
  absl::StatusOr<FetchedManifest> GetManifest(absl::string_view tag_or_digest,
                                              const std::optional<Descriptor>& expected);
  // Streams a blob into `writer` and commits it (size and digest checked); `progress` is called
  // with the bytes of each piece received. Tries each endpoint in turn.
  absl::Status FetchBlob(const Descriptor& blob, ContentStore::Writer& writer,
                         const std::function<void(int64_t)>& progress);

 private:
  friend class RegistryClient;

  // Asked during transfers and waits: true once the caller no longer wants the result (its gRPC
  // client hung up or its deadline passed). Empty: never.
  using CancelCheck = std::function<bool()>;
  struct Response;
  RegistrySession(RegistryClient* client, ImageReference ref, RegistryCredentials creds,
                  std::vector<RegistryEndpoint> endpoints, CancelCheck cancelled);

  // GET `path` (below /v2/<repo>/) on one endpoint, answering auth challenges once.
  absl::StatusOr<Response> Get(const RegistryEndpoint& ep, const std::string& path,
                               const std::string& accept, int64_t capture_limit,
                               const std::function<bool(const char*, size_t)>& sink);
  absl::StatusOr<std::string> Authorize(const RegistryEndpoint& ep,
                                        const std::vector<AuthChallenge>& challenges);
  absl::StatusOr<std::string> FetchToken(const RegistryEndpoint& ep, const AuthChallenge& c,
                                         const RegistryCredentials& creds);
  std::vector<size_t> EndpointOrder();
  // GET /v2/ once per endpoint: 200 or 401 means an OCI distribution API is there.
  absl::Status Ping(size_t endpoint);
  // The credentials to present to `ep` (empty ones when server_address names another host).
  const RegistryCredentials& CredentialsFor(const RegistryEndpoint& ep) const;

  RegistryClient* const client_;
  const ImageReference ref_;
  const RegistryCredentials creds_;
  const std::vector<RegistryEndpoint> endpoints_;
  const CancelCheck cancelled_;
  absl::Mutex mu_;
  std::map<std::string, std::string> authorization_ ABSL_GUARDED_BY(mu_);  // base_url -> header
  std::optional<size_t> preferred_ ABSL_GUARDED_BY(mu_);
  std::map<size_t, absl::Status> pinged_ ABSL_GUARDED_BY(mu_);
};

// The OCI distribution protocol over libcurl (HTTP/1.1, and HTTP/2 over TLS): ping, manifests,
// blobs, redirects (followed here, not by libcurl: never from https to http, and credentials
// never sent to another origin), anonymous, basic and bearer-token auth, mirrors and per-host
// TLS settings. A transfer slower than registry.pull_min_bytes_per_second for
// registry.pull_progress_timeout_seconds is aborted. Thread-safe; connections are reused.
class RegistryClient {
 public:
  explicit RegistryClient(RegistryConfig config);
  ~RegistryClient();

  std::unique_ptr<RegistrySession> NewSession(const ImageReference& ref, RegistryCredentials creds,
                                              CancelCheck cancelled = nullptr);

  // One HTTP exchange; exposed to the session. `sink` takes the body of a 2xx answer (return
  // false to abort); other bodies are kept (up to 4 KiB) for error messages.
  struct Request {
    std::string method = "GET";
    std::string url;
    std::vector<std::string> headers;
    std::string post_body;
    std::string basic_user, basic_password;  // sent as Basic auth when set
    const RegistryEndpoint* tls = nullptr;   // TLS settings; null: system defaults
    int64_t capture_limit = 0;               // keep up to this much of a 2xx body
    std::function<bool(const char*, size_t)> sink;
    CancelCheck cancelled;  // polled during the transfer: true aborts it (CANCELLED)
  };
  struct Result {
    long code = 0;
    std::map<std::string, std::string> headers;  // of the last response, names lower case
    std::string body;                            // captured 2xx body or an error body
    std::string content_type;
  };
  absl::StatusOr<Result> Perform(const Request& request);

 private:
  void* AcquireHandle();
  void ReleaseHandle(void* handle);
  // One hop of a request: no redirect is followed.
  absl::Status PerformOnce(void* handle, const Request& request, const std::string& url,
                           bool send_credentials, Result& result);

  const RegistryConfig config_;
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);
};

// A URL without its query string or user info (signed redirect URLs carry secrets).
std::string RedactUrl(absl::string_view url);

// "scheme://host:port" of an absolute URL, lower case, with the scheme's default port made
// explicit: two URLs of one origin share credentials, others never do. "" when not absolute.
std::string UrlOrigin(absl::string_view url);

}  // namespace podvisor
