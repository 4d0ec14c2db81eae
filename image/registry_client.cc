#include "image/registry_client.h"

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <mutex>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "image/digest.h"
#include "nlohmann/json.hpp"

namespace podvisor {
namespace {

constexpr int64_t kErrorBodyLimit = 4096;
constexpr int64_t kTokenBodyLimit = 1 << 20;
constexpr char kUserAgent[] = "podvisor/0.1";

std::once_flag curl_init_once;

absl::Status HttpStatusError(long code, absl::string_view what, absl::string_view body) {
  // Registries explain errors in a JSON body: {"errors":[{"code":..,"message":..}]}.
  std::string detail;
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    std::vector<std::string> parts;
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) continue;
      std::string code_s = e.value("code", "");
      std::string msg =
          e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      parts.push_back(absl::StrCat(code_s, code_s.empty() ? "" : ": ", msg.substr(0, 200)));
    }
    detail = absl::StrJoin(parts, "; ");
  }
  std::string msg = absl::StrCat(what, ": HTTP ", code, detail.empty() ? "" : " (", detail,
                                 detail.empty() ? "" : ")");
  switch (code) {
    case 401:
      return absl::UnauthenticatedError(msg);
    case 403:
      return absl::PermissionDeniedError(msg);
    case 404:
      return absl::NotFoundError(msg);
    case 400:
    case 405:
    case 406:
    case 415:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

CURLcode AddCaFile(CURL*, void* ssl_ctx, void* userdata) {
  auto* path = static_cast<const std::string*>(userdata);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  if (X509_STORE_load_file(store, path->c_str()) != 1) return CURLE_SSL_CACERT_BADFILE;
  return CURLE_OK;
}

constexpr int kMaxRedirects = 10;

struct Transfer {
  CURL* curl;
  const RegistryClient::Request* request;
  RegistryClient::Result* result;
  bool aborted = false;
  bool over_limit = false;
  bool cancelled = false;
};

int OnTransferInfo(void* opaque, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(opaque);
  if (t->request->cancelled && t->request->cancelled()) {
    t->cancelled = true;
    return 1;  // aborts the transfer
  }
  return 0;
}

size_t OnHeader(char* data, size_t size, size_t n, void* opaque) {
  auto* t = static_cast<Transfer*>(opaque);
  absl::string_view line(data, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    t->result->headers.clear();  // a new response (after a redirect or 100)
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return size * n;
  std::string name = absl::AsciiStrToLower(line.substr(0, colon));
  std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  auto& slot = t->result->headers[name];
  slot = slot.empty() ? value : absl::StrCat(slot, ", ", value);
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* opaque) {
  auto* t = static_cast<Transfer*>(opaque);
  const size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) {
    if (t->request->sink) {
      if (!t->request->sink(data, len)) {
        t->aborted = true;
        return 0;
      }
      return len;
    }
    if (static_cast<int64_t>(t->result->body.size() + len) > t->request->capture_limit) {
      t->over_limit = true;
      return 0;
    }
    t->result->body.append(data, len);
    return len;
  }
  if (static_cast<int64_t>(t->result->body.size()) < kErrorBodyLimit) {
    t->result->body.append(data, std::min<size_t>(len, kErrorBodyLimit));
  }
  return len;
}

std::string UrlEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace

std::string RedactUrl(absl::string_view url) {
  absl::string_view u = url.substr(0, url.find_first_of("?#"));
  size_t scheme = u.find("://");
  if (scheme != absl::string_view::npos) {
    size_t host_start = scheme + 3;
    size_t at = u.find('@', host_start);
    size_t slash = u.find('/', host_start);
    if (at != absl::string_view::npos && (slash == absl::string_view::npos || at < slash)) {
      return absl::StrCat(u.substr(0, host_start), u.substr(at + 1));
    }
  }
  return std::string(u);
}

std::vector<RegistryEndpoint> RegistryEndpoints(const RegistryConfig& config,
                                                absl::string_view domain) {
  std::vector<RegistryEndpoint> out;
  auto host_settings = [&](absl::string_view host) -> const RegistryHostConfig* {
    auto it = config.hosts.find(std::string(host));
    return it == config.hosts.end() ? nullptr : &it->second;
  };
  const RegistryHostConfig* own = host_settings(domain);
  if (own != nullptr) {
    for (const std::string& m : own->mirrors) {
      RegistryEndpoint ep;
      ep.mirror = true;
      absl::string_view base = absl::StripSuffix(absl::StripSuffix(m, "/"), "/v2");
      ep.base_url = std::string(absl::StripSuffix(base, "/"));
      absl::string_view host = ep.base_url;
      host = host.substr(host.find("://") + 3);
      host = host.substr(0, host.find('/'));
      if (const RegistryHostConfig* mh = host_settings(host)) {
        ep.insecure_skip_verify = mh->insecure_skip_verify;
        ep.ca_file = mh->ca_file;
      }
      out.push_back(std::move(ep));
    }
  }
  RegistryEndpoint up;
  std::string host = domain == "docker.io" ? "registry-1.docker.io" : std::string(domain);
  bool plain = false;
  if (own != nullptr) {
    up.insecure_skip_verify = own->insecure_skip_verify;
    up.ca_file = own->ca_file;
    plain = own->plain_http;
  }
  if (IsLoopbackHost(domain) && up.ca_file.empty() && !up.insecure_skip_verify) plain = true;
  up.base_url = absl::StrCat(plain ? "http://" : "https://", host);
  out.push_back(std::move(up));
  return out;
}

// ---------------------------------------------------------------------------------------------
// RegistryClient

RegistryClient::RegistryClient(RegistryConfig config) : config_(std::move(config)) {
  std::call_once(curl_init_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

RegistryClient::~RegistryClient() {
  absl::MutexLock lock(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* RegistryClient::AcquireHandle() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void RegistryClient::ReleaseHandle(void* handle) {
  curl_easy_reset(static_cast<CURL*>(handle));
  absl::MutexLock lock(&mu_);
  idle_.push_back(handle);
}

absl::Status RegistryClient::PerformOnce(void* handle, const Request& request,
                                         const std::string& url, bool send_credentials,
                                         Result& result) {
  CURL* curl = static_cast<CURL*>(handle);
  curl_easy_reset(curl);
  Transfer t{curl, &request, &result};
  curl_slist* headers = nullptr;
  for (const std::string& h : request.headers) {
    // Credentials stay with the origin they were issued for.
    if (!send_credentials && absl::StartsWithIgnoreCase(h, "authorization:")) continue;
    headers = curl_slist_append(headers, h.c_str());
  }
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, kUserAgent);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);  // Perform follows, with its own rules
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT,
                   static_cast<long>(config_.pull_min_bytes_per_second));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                   static_cast<long>(config_.pull_progress_timeout_seconds));
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  if (request.cancelled) {
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnTransferInfo);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  }
  if (request.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.post_body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.post_body.size()));
  } else if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  }
  if (send_credentials && (!request.basic_user.empty() || !request.basic_password.empty())) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, request.basic_user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, request.basic_password.c_str());
  }
  if (request.tls != nullptr) {
    if (request.tls->insecure_skip_verify) {
      curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (!request.tls->ca_file.empty()) {
      // Added to the system store rather than replacing it.
      curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, AddCaFile);
      curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &request.tls->ca_file);
    }
  }
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.code);
  char* ct = nullptr;
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
  if (ct != nullptr) result.content_type = ct;
  curl_slist_free_all(headers);
  const std::string what = absl::StrCat(request.method, " ", RedactUrl(url));
  if (t.over_limit) {
    return absl::OutOfRangeError(
        absl::StrCat(what, ": response larger than ", request.capture_limit, " bytes"));
  }
  if (t.aborted) return absl::AbortedError(absl::StrCat(what, ": transfer aborted"));
  if (t.cancelled) return absl::CancelledError(absl::StrCat(what, ": the pull was cancelled"));
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(absl::StrCat(
        what, ": no progress: less than ", config_.pull_min_bytes_per_second, " bytes/s for ",
        config_.pull_progress_timeout_seconds,
        " s (registry.pull_progress_timeout_seconds, registry.pull_min_bytes_per_second)"));
  }
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    return absl::UnavailableError(absl::StrCat(what, ": ", RedactUrl(detail)));
  }
  if (result.code >= 300 && result.code < 400) {
    char* location = nullptr;
    curl_easy_getinfo(curl, CURLINFO_REDIRECT_URL, &location);
    result.headers["location"] = location != nullptr ? location : "";
  }
  return absl::OkStatus();
}

absl::StatusOr<RegistryClient::Result> RegistryClient::Perform(const Request& request) {
  CURL* curl = static_cast<CURL*>(AcquireHandle());
  if (curl == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  absl::Cleanup release = [&] { ReleaseHandle(curl); };
  const std::string origin = UrlOrigin(request.url);
  std::string url = request.url;
  Request hop = request;
  for (int redirects = 0;; ++redirects) {
    Result result;
    const bool same_origin = UrlOrigin(url) == origin;
    if (absl::Status s = PerformOnce(curl, hop, url, same_origin, result); !s.ok()) return s;
    const bool redirect = result.code == 301 || result.code == 302 || result.code == 303 ||
                          result.code == 307 || result.code == 308;
    if (!redirect) return result;
    const std::string next = result.headers["location"];
    const std::string what = absl::StrCat(request.method, " ", RedactUrl(request.url));
    if (next.empty()) {
      return absl::UnavailableError(
          absl::StrCat(what, ": HTTP ", result.code, " redirect without a Location"));
    }
    if (redirects >= kMaxRedirects) {
      return absl::UnavailableError(
          absl::StrCat(what, ": more than ", kMaxRedirects, " redirects"));
    }
    const bool to_https = absl::StartsWithIgnoreCase(next, "https://");
    if (!to_https && !absl::StartsWithIgnoreCase(next, "http://")) {
      return absl::PermissionDeniedError(
          absl::StrCat(what, ": refused a redirect to ", RedactUrl(next), " (not http or https)"));
    }
    if (absl::StartsWithIgnoreCase(url, "https://") && !to_https) {
      return absl::PermissionDeniedError(
          absl::StrCat(what, ": refused a redirect from ", RedactUrl(url), " to ", RedactUrl(next),
                       " (https must not be downgraded to plain http)"));
    }
    if (result.code == 303 ||
        ((result.code == 301 || result.code == 302) && hop.method == "POST")) {
      hop.method = "GET";
      hop.post_body.clear();
    }
    url = next;
  }
}

std::string UrlOrigin(absl::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) return "";
  const std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  absl::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) rest.remove_prefix(at + 1);
  std::string host = absl::AsciiStrToLower(rest);
  const size_t bracket = host.rfind(']');
  const size_t colon = host.rfind(':');
  const bool has_port =
      colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
  if (!has_port) absl::StrAppend(&host, scheme == "https" ? ":443" : ":80");
  return absl::StrCat(scheme, "://", host);
}

std::unique_ptr<RegistrySession> RegistryClient::NewSession(const ImageReference& ref,
                                                            RegistryCredentials creds,
                                                            CancelCheck cancelled) {
  return std::unique_ptr<RegistrySession>(new RegistrySession(
      this, ref, std::move(creds), RegistryEndpoints(config_, ref.domain), std::move(cancelled)));
}

// ---------------------------------------------------------------------------------------------
// RegistrySession

struct RegistrySession::Response {
  RegistryClient::Result result;
};

RegistrySession::RegistrySession(RegistryClient* client, ImageReference ref,
                                 RegistryCredentials creds, std::vector<RegistryEndpoint> endpoints,
                                 CancelCheck cancelled)
    : client_(client),
      ref_(std::move(ref)),
      creds_(std::move(creds)),
      endpoints_(std::move(endpoints)),
      cancelled_(std::move(cancelled)) {}

// username/password, or the base64 `auth` field; false when there are none.
static bool UserPassword(const RegistryCredentials& creds, std::string* user,
                         std::string* password) {
  if (!creds.username.empty() || !creds.password.empty()) {
    *user = creds.username;
    *password = creds.password;
    return true;
  }
  if (!creds.auth.empty()) {
    std::string decoded;
    if (!absl::Base64Unescape(creds.auth, &decoded)) return false;
    size_t colon = decoded.find(':');
    if (colon == std::string::npos) return false;
    *user = decoded.substr(0, colon);
    *password = decoded.substr(colon + 1);
    return true;
  }
  return false;
}

// "https://index.docker.io/v1/" -> "index.docker.io"
static std::string HostOf(absl::string_view address) {
  absl::string_view a = address;
  if (size_t scheme = a.find("://"); scheme != absl::string_view::npos) a.remove_prefix(scheme + 3);
  return absl::AsciiStrToLower(a.substr(0, a.find('/')));
}

static bool IsDockerHubHost(absl::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

const RegistryCredentials& RegistrySession::CredentialsFor(const RegistryEndpoint& ep) const {
  static const RegistryCredentials kNone;
  if (creds_.server_address.empty()) return creds_;
  const std::string want = HostOf(creds_.server_address);
  const std::string host = HostOf(ep.base_url);
  if (want == host) return creds_;
  if (!ep.mirror &&
      (want == ref_.domain || (ref_.domain == "docker.io" && IsDockerHubHost(want)))) {
    return creds_;
  }
  return kNone;
}

absl::StatusOr<std::string> RegistrySession::FetchToken(const RegistryEndpoint& ep,
                                                        const AuthChallenge& c,
                                                        const RegistryCredentials& creds) {
  auto realm_it = c.params.find("realm");
  if (realm_it == c.params.end() || realm_it->second.empty()) {
    return absl::UnauthenticatedError("registry asked for a bearer token without a realm");
  }
  const std::string& realm = realm_it->second;
  if (!absl::StartsWith(realm, "https://") && !absl::StartsWith(realm, "http://")) {
    return absl::UnauthenticatedError(
        absl::StrCat("token realm ", RedactUrl(realm), " is not an http(s) URL"));
  }
  std::string service = c.params.contains("service") ? c.params.at("service") : "";
  std::string scope = c.params.contains("scope") ? c.params.at("scope")
                                                 : absl::StrCat("repository:", ref_.path, ":pull");
  RegistryClient::Request req;
  req.tls = &ep;
  req.capture_limit = kTokenBodyLimit;
  req.cancelled = cancelled_;
  if (!creds.identity_token.empty()) {
    // OAuth2 refresh-token grant, as Docker's token servers accept.
    req.method = "POST";
    req.url = realm;
    req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
    req.post_body = absl::StrCat(
        "grant_type=refresh_token&client_id=podvisor&service=", UrlEncode(service),
        "&scope=", UrlEncode(scope), "&refresh_token=", UrlEncode(creds.identity_token));
  } else {
    req.url = absl::StrCat(realm, absl::StrContains(realm, "?") ? "&" : "?",
                           "service=", UrlEncode(service), "&scope=", UrlEncode(scope));
    std::string user, password;
    if (UserPassword(creds, &user, &password)) {
      req.basic_user = user;
      req.basic_password = password;
    }
  }
  absl::StatusOr<RegistryClient::Result> r = client_->Perform(req);
  const std::string what = absl::StrCat("token server ", RedactUrl(realm));
  if (!r.ok()) return absl::UnavailableError(absl::StrCat(what, ": ", r.status().message()));
  if (r->code == 401 || r->code == 403) {
    return absl::UnauthenticatedError(
        absl::StrCat(what, ": credentials rejected (HTTP ", r->code, ")"));
  }
  if (r->code < 200 || r->code >= 300) return HttpStatusError(r->code, what, "");
  nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
  std::string token;
  if (j.is_object()) {
    if (j.contains("token") && j["token"].is_string()) token = j["token"].get<std::string>();
    if (token.empty() && j.contains("access_token") && j["access_token"].is_string()) {
      token = j["access_token"].get<std::string>();
    }
  }
  if (token.empty()) return absl::UnauthenticatedError(absl::StrCat(what, ": no token in answer"));
  return token;
}

absl::StatusOr<std::string> RegistrySession::Authorize(
    const RegistryEndpoint& ep, const std::vector<AuthChallenge>& challenges) {
  const RegistryCredentials& creds = CredentialsFor(ep);
  for (const AuthChallenge& c : challenges) {
    if (c.scheme == "bearer") {
      if (!creds.registry_token.empty()) return absl::StrCat("Bearer ", creds.registry_token);
      absl::StatusOr<std::string> token = FetchToken(ep, c, creds);
      if (!token.ok()) return token.status();
      return absl::StrCat("Bearer ", *token);
    }
  }
  for (const AuthChallenge& c : challenges) {
    if (c.scheme == "basic") {
      std::string user, password;
      if (!UserPassword(creds, &user, &password)) {
        return absl::UnauthenticatedError(
            absl::StrCat("registry ", ep.base_url, " requires credentials (basic auth)"));
      }
      return absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(user, ":", password)));
    }
  }
  return absl::UnauthenticatedError(
      absl::StrCat("registry ", ep.base_url, " asks for an unsupported authentication scheme"));
}

absl::StatusOr<RegistrySession::Response> RegistrySession::Get(
    const RegistryEndpoint& ep, const std::string& path, const std::string& accept,
    int64_t capture_limit, const std::function<bool(const char*, size_t)>& sink) {
  const std::string url = absl::StrCat(ep.base_url, "/v2/", ref_.path, "/", path);
  for (int attempt = 0; attempt < 2; ++attempt) {
    RegistryClient::Request req;
    req.url = url;
    req.tls = &ep;
    req.capture_limit = capture_limit;
    req.sink = sink;
    req.cancelled = cancelled_;
    if (!accept.empty()) req.headers.push_back(absl::StrCat("Accept: ", accept));
    {
      absl::MutexLock lock(&mu_);
      auto it = authorization_.find(ep.base_url);
      if (it != authorization_.end()) {
        req.headers.push_back(absl::StrCat("Authorization: ", it->second));
      }
    }
    absl::StatusOr<RegistryClient::Result> r = client_->Perform(req);
    if (!r.ok()) return r.status();
    if (r->code == 401 && attempt == 0) {
      std::vector<AuthChallenge> challenges = ParseWwwAuthenticate(r->headers["www-authenticate"]);
      absl::StatusOr<std::string> header = Authorize(ep, challenges);
      if (!header.ok()) {
        return absl::Status(header.status().code(),
                            absl::StrCat("GET ", RedactUrl(url), ": ", header.status().message()));
      }
      absl::MutexLock lock(&mu_);
      authorization_[ep.base_url] = *header;
      continue;
    }
    if (r->code == 401) {
      return absl::UnauthenticatedError(
          absl::StrCat("GET ", RedactUrl(url), ": registry rejected the credentials (HTTP 401)"));
    }
    if (r->code < 200 || r->code >= 300) {
      return HttpStatusError(r->code, absl::StrCat("GET ", RedactUrl(url)), r->body);
    }
    return Response{std::move(*r)};
  }
  return absl::InternalError("unreachable");
}

std::vector<size_t> RegistrySession::EndpointOrder() {
  std::vector<size_t> order;
  absl::MutexLock lock(&mu_);
  if (preferred_) order.push_back(*preferred_);
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    if (!preferred_ || i != *preferred_) order.push_back(i);
  }
  return order;
}

absl::Status RegistrySession::Ping(size_t endpoint) {
  {
    absl::MutexLock lock(&mu_);
    auto it = pinged_.find(endpoint);
    if (it != pinged_.end()) return it->second;
  }
  const RegistryEndpoint& ep = endpoints_[endpoint];
  RegistryClient::Request req;
  req.url = ep.base_url + "/v2/";
  req.tls = &ep;
  req.capture_limit = kErrorBodyLimit;
  req.cancelled = cancelled_;
  absl::StatusOr<RegistryClient::Result> r = client_->Perform(req);
  absl::Status s = r.status();
  if (r.ok() && r->code != 200 && r->code != 401) {
    s = absl::UnavailableError(absl::StrCat("GET ", RedactUrl(req.url), ": HTTP ", r->code,
                                            ": not an OCI distribution registry"));
  }
  absl::MutexLock lock(&mu_);
  pinged_[endpoint] = s;
  return s;
}

absl::StatusOr<FetchedManifest> RegistrySession::GetManifest(
    absl::string_view tag_or_digest, const std::optional<Descriptor>& expected) {
  const bool by_digest = absl::StartsWith(tag_or_digest, kSha256Prefix);
  absl::Status last;
  std::vector<std::string> failures;
  for (size_t i : EndpointOrder()) {
    const RegistryEndpoint& ep = endpoints_[i];
    absl::Status ping = Ping(i);
    absl::StatusOr<Response> r = ping.ok() ? Get(ep, absl::StrCat("manifests/", tag_or_digest),
                                                 ManifestAcceptHeader(), kMaxManifestBytes, nullptr)
                                           : absl::StatusOr<Response>(ping);
    absl::Status s = r.status();
    FetchedManifest m;
    if (r.ok()) {
      m.body = std::move(r->result.body);
      m.content_type = r->result.content_type;
      m.digest = Sha256Digest(m.body);
      if (by_digest && m.digest != tag_or_digest) {
        s = absl::DataLossError(absl::StrCat("manifest ", tag_or_digest, " from ", ep.base_url,
                                             " has digest ", m.digest, " (digest mismatch)"));
      } else if (expected && expected->size != static_cast<int64_t>(m.body.size())) {
        s = absl::DataLossError(absl::StrCat("manifest ", tag_or_digest, " from ", ep.base_url,
                                             " is ", m.body.size(), " bytes, the index says ",
                                             expected->size));
      } else if (!by_digest) {
        const std::string& header = r->result.headers["docker-content-digest"];
        if (ValidateDigest(header).ok() && header != m.digest) {
          s = absl::DataLossError(absl::StrCat("manifest ", ref_.Name(), ":", tag_or_digest,
                                               " from ", ep.base_url, " has digest ", m.digest,
                                               " but the registry announced ", header));
        }
      }
    }
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      preferred_ = i;
      return m;
    }
    if (absl::IsCancelled(s)) return s;
    if (ep.mirror) {
      PV_LOG(kWarning) << "pull " << ref_.String() << ": mirror " << ep.base_url
                       << " failed, trying the next endpoint: " << s.message();
    }
    failures.push_back(std::string(s.message()));
    last = s;
  }
  return absl::Status(last.code(), absl::StrJoin(failures, "; "));
}

absl::Status RegistrySession::FetchBlob(const Descriptor& blob, ContentStore::Writer& writer,
                                        const std::function<void(int64_t)>& progress) {
  absl::Status last;
  std::vector<std::string> failures;
  for (size_t i : EndpointOrder()) {
    const RegistryEndpoint& ep = endpoints_[i];
    if (absl::Status s = writer.Reset(); !s.ok()) return s;
    absl::Status write_error;
    auto sink = [&](const char* data, size_t size) {
      if (writer.written() + static_cast<int64_t>(size) > blob.size) {
        write_error = absl::DataLossError(absl::StrCat("blob ", blob.digest, " is larger than the ",
                                                       blob.size, " bytes its descriptor says"));
        return false;
      }
      write_error = writer.Write(data, size);
      if (!write_error.ok()) return false;
      if (progress) progress(static_cast<int64_t>(size));
      return true;
    };
    absl::StatusOr<Response> r = Get(ep, absl::StrCat("blobs/", blob.digest), "", 0, sink);
    absl::Status s = !write_error.ok() ? write_error : r.status();
    if (s.ok()) s = writer.Commit(blob.digest, blob.size);
    if (s.ok()) return absl::OkStatus();
    if (absl::IsInternal(s) && !write_error.ok()) return s;  // local disk trouble: stop
    if (absl::IsCancelled(s)) return s;
    if (ep.mirror) {
      PV_LOG(kWarning) << "pull " << ref_.String() << ": blob " << blob.digest << " from mirror "
                       << ep.base_url << " failed, trying the next endpoint: " << s.message();
    }
    failures.push_back(std::string(s.message()));
    last = s;
  }
  return absl::Status(last.code(), absl::StrJoin(failures, "; "));
}

}  // namespace podvisor
