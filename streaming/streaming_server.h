#pragma once

// The streaming server: the HTTP endpoint behind the URLs that the CRI Exec, Attach and
// PortForward RPCs return. kubelet and crictl connect to such a URL and upgrade the connection to
// SPDY/3.1 (subprotocols v4/v3/v2.channel.k8s.io, channel.k8s.io, portforward.k8s.io) or to a
// WebSocket (v5/v4.channel.k8s.io and their base64 variants, port-forward channels). The server
// turns those byte streams into calls on a StreamingRuntime, which reaches the container.
//
// See docs/streaming.md.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/config.h"

namespace podvisor::streaming {

// What an Exec RPC asked for. `in`, `out`, `err` say which of the process's stdin, stdout and
// stderr the client wants connected.
struct ExecRequest {
  std::string container_id;
  std::vector<std::string> cmd;
  bool tty = false;
  bool in = false;
  bool out = false;
  bool err = false;
};

// What an Attach RPC asked for: the same streams, connected to the container's main process.
struct AttachRequest {
  std::string container_id;
  bool tty = false;
  bool in = false;
  bool out = false;
  bool err = false;
};

// What a PortForward RPC asked for. Ports may be empty: SPDY clients name the port per stream,
// WebSocket clients in the URL's `port` query parameters.
struct PortForwardRequest {
  std::string sandbox_id;
  std::vector<int32_t> ports;
};

struct TerminalSize {
  uint16_t width = 0;
  uint16_t height = 0;
};

// Bytes flowing from the client into the container (stdin, a forwarded connection's upload).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Blocks until bytes arrive; returns how many were copied into `buf` (at most `len`), or 0 once
  // the stream has ended: the client closed it, reset it, or went away.
  virtual size_t Read(char* buf, size_t len) = 0;
  // Stops reading: a Read blocked in another thread returns 0, and so do later reads. A runtime
  // calls it when the process has exited while a thread of its own still waits for input.
  virtual void Cancel() = 0;
};

// Bytes flowing from the container to the client (stdout, stderr, a forwarded connection's
// download).
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // Blocks while the client is slower than the producer (flow control). Returns false once the
  // client can no longer receive anything (it reset the stream or went away).
  virtual bool Write(absl::string_view data) = 0;
  // Ends the stream: the client sees end-of-file. Further writes are dropped. Idempotent.
  virtual void Close() = 0;
};

// Terminal size changes sent by the client of a TTY session.
class ResizeSource {
 public:
  virtual ~ResizeSource() = default;
  // Blocks until the next size arrives; nullopt when the client sends no more.
  virtual std::optional<TerminalSize> Next() = 0;
  // Unblocks a Next() waiting in another thread (it returns nullopt), as ByteSource::Cancel.
  virtual void Cancel() = 0;
};

// The streams of one exec or attach session, handed to the runtime. A stream the client did not
// ask for is null; `err` is null with a TTY (the terminal merges stderr into stdout); `resize` is
// non-null only with a TTY. `done` is notified when the client has gone away or the server is
// stopping: the runtime should then end the session promptly (reads and writes on the streams
// already return 0 / false by then). All pointers stay valid until the runtime call returns; the
// streams may be used from any thread.
struct SessionStreams {
  ByteSource* in = nullptr;
  ByteSink* out = nullptr;
  ByteSink* err = nullptr;
  ResizeSource* resize = nullptr;
  const absl::Notification* done = nullptr;
};

// How the streaming server reaches containers. Implemented over the guest agent by the daemon and
// by a fake in unit tests. Each call runs on a thread of its own and may block for as long as the
// session lasts; calls for different sessions run concurrently.
class StreamingRuntime {
 public:
  virtual ~StreamingRuntime() = default;

  // Runs `request.cmd` in the container with the given streams until it exits, and returns its
  // exit code. An error means the command could not be run at all (unknown container, not
  // running, agent unreachable); the client then sees that message.
  virtual absl::StatusOr<int> Exec(const ExecRequest& request, const SessionStreams& streams) = 0;

  // Connects the streams to the container's main process until it exits or the client leaves
  // (`streams.done`). Several clients may attach to one container at once.
  virtual absl::Status Attach(const AttachRequest& request, const SessionStreams& streams) = 0;

  // Connects one forwarded connection to `port` inside the sandbox's network namespace and copies
  // bytes both ways until both directions have ended or `done` is notified. End of `in` means the
  // client closed its side (shut down writing towards the port, keep reading). An error is
  // reported to the client on the connection's error stream.
  virtual absl::Status PortForward(const std::string& sandbox_id, int32_t port, ByteSource& in,
                                   ByteSink& out, const absl::Notification& done) = 0;
};

struct StreamingServerOptions {
  std::string address = "127.0.0.1";  // an IPv4 or IPv6 literal; 0.0.0.0 and :: bind all
  int port = 0;                       // 0: an ephemeral port
  std::string tls_cert_file;          // both set: serve HTTPS
  std::string tls_key_file;
  absl::Duration token_ttl = absl::Minutes(1);
  size_t max_pending_requests = 1000;
  // Limits (docs/reliability.md, "Streaming limits"). Upgraded connections at once:
  size_t max_connections = 512;
  // Connections that have not shown a valid token yet: at most this many at once (the oldest is
  // closed to make room), and at most `max_unauthenticated_per_source` from one client address
  // (more are closed on accept). They never take an upgraded connection's slot.
  size_t max_unauthenticated_connections = 128;
  size_t max_unauthenticated_per_source = 32;
  // How long a client may take for the TLS handshake and its HTTP request head.
  absl::Duration request_header_timeout = absl::Seconds(10);
  // How long a client may take, after the upgrade, to open the streams it announced.
  absl::Duration stream_creation_timeout = absl::Seconds(30);
  // An upgraded connection with no bytes either way for this long is closed.
  absl::Duration idle_timeout = absl::Hours(4);
  // Session threads (exec, attach, each forwarded connection) at once, server-wide.
  size_t max_sessions = 4096;
  // Ports of one PortForward request (at most 128: WebSocket channels are one byte).
  size_t max_ports_per_request = 64;
  // Forwarded connections running at once on one connection (further pairs are refused).
  size_t max_forwards_per_connection = 256;
  // Client bytes buffered per connection before it stops reading the socket.
  size_t max_buffered_input = 4 << 20;
  // Control replies (PING, RST_STREAM) queued for a client that does not read: the connection
  // is closed beyond this.
  size_t max_queued_control_frames = 1000;

  static StreamingServerOptions FromConfig(const StreamingConfig& config);
};

// The server. Thread-safe: the CRI handlers call Get*Url from any thread.
class StreamingServer {
 public:
  virtual ~StreamingServer() = default;

  // Binds, starts serving on a thread of its own, and returns. The runtime must outlive the
  // server.
  static absl::StatusOr<std::unique_ptr<StreamingServer>> Start(
      const StreamingServerOptions& options, StreamingRuntime* runtime);

  // Registers a request and returns its single-use URL, http(s)://<address>:<port>/exec/<token>.
  // INVALID_ARGUMENT for a request kubelet would refuse (no stream requested, tty with stderr,
  // empty command); RESOURCE_EXHAUSTED when too many requests are pending.
  virtual absl::StatusOr<std::string> GetExecUrl(const ExecRequest& request) = 0;
  virtual absl::StatusOr<std::string> GetAttachUrl(const AttachRequest& request) = 0;
  virtual absl::StatusOr<std::string> GetPortForwardUrl(const PortForwardRequest& request) = 0;
  // What GetPortForwardUrl checks before registering: INVALID_ARGUMENT for a port outside
  // 1..65535 or more than `max_ports_per_request` ports.
  virtual absl::Status CheckPortForward(const PortForwardRequest& request) const = 0;

  // http(s)://<address>:<port>, the port being the one actually bound.
  virtual std::string BaseUrl() const = 0;

  // Stops accepting, ends every session (runtimes see `done`), and waits for them. Idempotent;
  // also done by the destructor.
  virtual void Stop() = 0;
};

}  // namespace podvisor::streaming
