#include "tools/podvisorctl/admin_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace podvisor::ctl {
namespace {

// Answers are a few KiB per VM; this bounds what a confused peer can make us hold.
constexpr size_t kMaxAnswerBytes = 16 * 1024 * 1024;

absl::StatusCode CodeFromName(const std::string& name) {
  for (int c = 0; c <= 16; ++c) {
    if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) == name) {
      return static_cast<absl::StatusCode>(c);
    }
  }
  return absl::StatusCode::kUnknown;
}

}  // namespace

absl::StatusOr<nlohmann::json> AdminCall(const std::string& socket_path,
                                         const nlohmann::json& request) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", socket_path));
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("cannot reach podvisord at ", socket_path, ": ",
                                               std::strerror(err),
                                               " (is it running? --state-dir?)"));
  }
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string line = request.dump() + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("send to ", socket_path, ": ", std::strerror(errno)));
  }
  std::string answer;
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
    if (answer.size() > kMaxAnswerBytes) break;
  }
  ::close(fd);
  nlohmann::json j = nlohmann::json::parse(answer, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("ok")) {
    return absl::InternalError(absl::StrCat("podvisord gave no valid answer (", answer.size(),
                                            " bytes)"));
  }
  if (!j["ok"].get<bool>()) {
    return absl::Status(CodeFromName(j.value("code", "UNKNOWN")), j.value("error", "failed"));
  }
  return j["result"];
}

}  // namespace podvisor::ctl
