#pragma once

// Protocol-independent parts of a streaming session (internal to streaming/): the channel
// abstraction that SPDY streams and WebSocket channels both implement, the code that drives the
// runtime for exec, attach and port-forward, and the status messages of the remote-command
// protocols.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "streaming/streaming_server.h"

namespace podvisor::streaming {

// One bidirectional byte channel of a connection (a SPDY stream, a WebSocket channel). Read() and
// Write() block; Close() ends our sending half. Thread-safe.
class Channel : public ByteSource, public ByteSink {};

// How the outcome of a remote command is written on the error channel.
enum class StatusFormat {
  kText,  // v1..v3: nothing on success, the error message on failure
  kJson,  // v4, v5: a metav1.Status object
};

struct RemoteCommandChannels {
  Channel* in = nullptr;
  Channel* out = nullptr;
  Channel* err = nullptr;
  Channel* error = nullptr;
  Channel* resize = nullptr;  // with a TTY, when the protocol carries resize events
};

// The metav1.Status JSON kubelet writes: Success; Failure/NonZeroExitCode with the code in
// details.causes[ExitCode]; Failure/InternalError (code 500) for a command that could not run.
std::string SuccessStatusJson();
std::string ExitCodeStatusJson(int exit_code);
std::string InternalErrorStatusJson(absl::string_view message);

// Runs one exec (or attach) session to the end: calls the runtime on this thread, then reports the
// outcome on the error channel and closes the output channels. The caller ends the connection.
void RunExec(StreamingRuntime& runtime, const ExecRequest& request,
             const RemoteCommandChannels& channels, StatusFormat format,
             const absl::Notification& done);
void RunAttach(StreamingRuntime& runtime, const AttachRequest& request,
               const RemoteCommandChannels& channels, StatusFormat format,
               const absl::Notification& done);

// Runs one forwarded connection: the runtime copies between `data` and the port; an error is
// written to `error`. Both channels are closed at the end.
void RunPortForward(StreamingRuntime& runtime, const std::string& sandbox_id, int32_t port,
                    Channel& data, Channel* error, const absl::Notification& done);

// Reads the JSON terminal sizes ({"Width":80,"Height":24}, one object after another) a client
// sends on the resize channel. Ends at the end of the channel or at the first malformed object.
class ResizeDecoder : public ResizeSource {
 public:
  explicit ResizeDecoder(ByteSource* source) : source_(source) {}
  std::optional<TerminalSize> Next() override;
  void Cancel() override {
    if (source_ != nullptr) source_->Cancel();
  }

  // Extracts the first complete JSON object from `buffer` (consuming it); nullopt if incomplete.
  // Exposed for tests.
  static std::optional<std::string> TakeObject(std::string& buffer, bool* malformed);

 private:
  ByteSource* source_;
  std::string buffer_;
  bool ended_ = false;
};

}  // namespace podvisor::streaming
