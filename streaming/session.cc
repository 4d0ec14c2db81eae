#include "streaming/session.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

namespace podvisor::streaming {
namespace {

constexpr size_t kMaxResizeObject = 4096;

void WriteStatus(Channel* error, StatusFormat format, const std::string& json,
                 const std::string& text) {
  if (error == nullptr) return;
  if (format == StatusFormat::kJson) {
    error->Write(json);
  } else if (!text.empty()) {
    error->Write(text);
  }
}

void CloseOutputs(const RemoteCommandChannels& channels) {
  if (channels.in != nullptr) channels.in->Cancel();
  if (channels.resize != nullptr) channels.resize->Cancel();
  if (channels.out != nullptr) channels.out->Close();
  if (channels.err != nullptr) channels.err->Close();
}

SessionStreams MakeStreams(const RemoteCommandChannels& channels, ResizeDecoder* resize,
                           const absl::Notification& done) {
  SessionStreams streams;
  streams.in = channels.in;
  streams.out = channels.out;
  streams.err = channels.err;
  streams.resize = channels.resize != nullptr ? resize : nullptr;
  streams.done = &done;
  return streams;
}

}  // namespace

std::string SuccessStatusJson() {
  return nlohmann::json{{"metadata", nlohmann::json::object()}, {"status", "Success"}}.dump();
}

std::string ExitCodeStatusJson(int exit_code) {
  nlohmann::json status = {
      {"metadata", nlohmann::json::object()},
      {"status", "Failure"},
      {"message", absl::StrCat("command terminated with non-zero exit code: exit status ",
                               exit_code)},
      {"reason", "NonZeroExitCode"},
      {"details",
       {{"causes", nlohmann::json::array({{{"reason", "ExitCode"},
                                           {"message", std::to_string(exit_code)}}})}}}};
  return status.dump();
}

std::string InternalErrorStatusJson(absl::string_view message) {
  std::string msg(message);
  nlohmann::json status = {
      {"metadata", nlohmann::json::object()},
      {"status", "Failure"},
      {"message", absl::StrCat("Internal error occurred: ", msg)},
      {"reason", "InternalError"},
      {"details", {{"causes", nlohmann::json::array({{{"message", msg}}})}}},
      {"code", 500}};
  return status.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void RunExec(StreamingRuntime& runtime, const ExecRequest& request,
             const RemoteCommandChannels& channels, StatusFormat format,
             const absl::Notification& done) {
  ResizeDecoder resize(channels.resize);
  absl::StatusOr<int> exit_code = runtime.Exec(request, MakeStreams(channels, &resize, done));
  CloseOutputs(channels);
  if (!exit_code.ok()) {
    std::string message = absl::StrCat("error executing command in container: ",
                                       exit_code.status().message());
    PV_LOG(kWarning) << "exec in " << request.container_id << ": " << message;
    WriteStatus(channels.error, format, InternalErrorStatusJson(message),
                absl::StrCat("Internal error occurred: ", message));
  } else if (*exit_code != 0) {
    WriteStatus(channels.error, format, ExitCodeStatusJson(*exit_code),
                absl::StrCat("command terminated with non-zero exit code: exit status ",
                             *exit_code));
  } else {
    WriteStatus(channels.error, format, SuccessStatusJson(), "");
  }
  if (channels.error != nullptr) channels.error->Close();
}

void RunAttach(StreamingRuntime& runtime, const AttachRequest& request,
               const RemoteCommandChannels& channels, StatusFormat format,
               const absl::Notification& done) {
  ResizeDecoder resize(channels.resize);
  absl::Status status = runtime.Attach(request, MakeStreams(channels, &resize, done));
  CloseOutputs(channels);
  if (!status.ok()) {
    std::string message = absl::StrCat("error attaching to container: ", status.message());
    PV_LOG(kWarning) << "attach to " << request.container_id << ": " << message;
    WriteStatus(channels.error, format, InternalErrorStatusJson(message),
                absl::StrCat("Internal error occurred: ", message));
  } else {
    WriteStatus(channels.error, format, SuccessStatusJson(), "");
  }
  if (channels.error != nullptr) channels.error->Close();
}

void RunPortForward(StreamingRuntime& runtime, const std::string& sandbox_id, int32_t port,
                    Channel& data, Channel* error, const absl::Notification& done) {
  absl::Status status = runtime.PortForward(sandbox_id, port, data, data, done);
  if (!status.ok() && error != nullptr) {
    error->Write(absl::StrCat("error forwarding port ", port, " to pod ", sandbox_id, ": ",
                              status.message()));
  }
  data.Close();
  if (error != nullptr) error->Close();
}

std::optional<std::string> ResizeDecoder::TakeObject(std::string& buffer, bool* malformed) {
  *malformed = false;
  size_t start = 0;
  while (start < buffer.size() && std::isspace(static_cast<unsigned char>(buffer[start]))) {
    ++start;
  }
  if (start == buffer.size()) {
    buffer.clear();
    return std::nullopt;
  }
  if (buffer[start] != '{') {
    *malformed = true;
    return std::nullopt;
  }
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (size_t i = start; i < buffer.size(); ++i) {
    char c = buffer[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) {
        std::string object = buffer.substr(start, i + 1 - start);
        buffer.erase(0, i + 1);
        return object;
      }
    }
  }
  if (buffer.size() - start > kMaxResizeObject) *malformed = true;
  return std::nullopt;
}

std::optional<TerminalSize> ResizeDecoder::Next() {
  if (source_ == nullptr) return std::nullopt;
  char chunk[512];
  while (!ended_) {
    bool malformed = false;
    std::optional<std::string> object = TakeObject(buffer_, &malformed);
    if (malformed) break;
    if (object.has_value()) {
      nlohmann::json json = nlohmann::json::parse(*object, nullptr, /*allow_exceptions=*/false);
      if (json.is_discarded() || !json.is_object()) break;
      TerminalSize size;
      auto field = [&](const char* name) -> int64_t {
        auto it = json.find(name);
        return it != json.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
      };
      int64_t width = field("Width");
      int64_t height = field("Height");
      if (width < 0 || width > 0xffff || height < 0 || height > 0xffff) break;
      size.width = static_cast<uint16_t>(width);
      size.height = static_cast<uint16_t>(height);
      return size;
    }
    size_t n = source_->Read(chunk, sizeof chunk);
    if (n == 0) break;
    buffer_.append(chunk, n);
  }
  ended_ = true;
  return std::nullopt;
}

}  // namespace podvisor::streaming
