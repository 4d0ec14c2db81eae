#pragma once

// Streaming clients written for the tests: a SPDY/3.1 client over a plain socket (the framing of
// streaming/spdy_framer.h, the upgrade and stream layout of client-go), and a WebSocket client
// over Boost.Beast. Both speak what kubelet and crictl speak, so the server is tested from the
// outside.

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "streaming/spdy_framer.h"
#include "streaming/streaming_server.h"

namespace podvisor::testing {

struct ParsedUrl {
  std::string host;
  int port = 0;
  std::string path;  // with query
};
ParsedUrl ParseUrl(const std::string& url);

// A connected TCP socket to host:port, or -1.
int Dial(const std::string& host, int port);

class SpdyTestClient {
 public:
  ~SpdyTestClient();

  // Sends the upgrade request; returns the HTTP status (101 on success; the reader then runs), or
  // -1 when the connection failed. `response` receives the whole response head (and the body for
  // errors).
  int Connect(const std::string& url, const std::vector<std::string>& protocols,
              std::string* response = nullptr);
  uint32_t OpenStream(const streaming::spdy::Headers& headers, bool fin = false);
  // True once the server replied; false if it reset the stream, closed, or the time ran out.
  bool WaitReply(uint32_t id, absl::Duration timeout = absl::Seconds(20));
  bool WaitReset(uint32_t id, absl::Duration timeout = absl::Seconds(20));
  void Send(uint32_t id, const std::string& data, bool fin = false);
  void SendRaw(const std::string& bytes);
  // Waits for the stream's FIN, reset or the connection's end; returns everything received.
  std::string ReadAll(uint32_t id, absl::Duration timeout = absl::Seconds(20));
  // Waits until at least `n` bytes arrived on the stream; returns what arrived.
  std::string ReadAtLeast(uint32_t id, size_t n, absl::Duration timeout = absl::Seconds(20));
  bool WaitClosed(absl::Duration timeout = absl::Seconds(20));
  bool got_goaway();
  bool got_settings();
  // Sum of the WINDOW_UPDATE deltas the server sent for stream `id` (0: the session).
  int64_t window_granted(uint32_t id);
  // Bytes received so far on stream `id`.
  size_t Received(uint32_t id);
  bool WaitReceived(uint32_t id, size_t n, absl::Duration timeout = absl::Seconds(60));
  // Counts received data without keeping it (benchmarks).
  void DiscardData(bool discard);
  // Data frames received on streams the server had not yet replied to (dropped).
  int violations();
  // Shuts the socket down (as a vanishing client would) and joins the reader.
  void Close();

 private:
  void ReaderLoop();
  int fd_ = -1;
  std::thread reader_;
  absl::Mutex write_mu_;
  streaming::spdy::HeaderCompressor compressor_;
  uint32_t next_id_ = 1;
  absl::Mutex mu_;
  std::map<uint32_t, std::string> data_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> fin_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> replied_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> reset_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool goaway_ ABSL_GUARDED_BY(mu_) = false;
  bool settings_ ABSL_GUARDED_BY(mu_) = false;
  int violations_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint32_t, int64_t> window_updates_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, size_t> received_ ABSL_GUARDED_BY(mu_);
  bool discard_ ABSL_GUARDED_BY(mu_) = false;
  std::string early_;
};

struct ExecOptions {
  std::string protocol = "v4.channel.k8s.io";
  bool in = false, out = true, err = true, tty = false;
  std::string stdin_data;
  bool close_stdin = true;
  std::vector<streaming::TerminalSize> resizes;
};

struct ExecResult {
  int http_status = 0;
  std::string out, err, error;
  bool connection_closed = false;
  int violations = 0;  // data the server sent before replying to the stream
};

// An exec/attach session as client-go runs it over SPDY.
ExecResult SpdyExec(const std::string& url, const ExecOptions& options);

class WsTestClient {
 public:
  WsTestClient();
  ~WsTestClient();
  // Returns 101 on success (with the chosen subprotocol), the HTTP status of a refusal, or -1.
  int Connect(const std::string& url, const std::vector<std::string>& protocols,
              std::string* chosen = nullptr);
  // Sends one message: the channel byte then `data` (binary), or channel digit + base64 (text).
  void Send(unsigned char channel, const std::string& data, bool base64 = false);
  void SendRaw(const std::string& message, bool text = false);
  // Reads messages until the server closes; returns them in order (channel byte/digit first).
  std::vector<std::string> ReadUntilClose(absl::Duration timeout = absl::Seconds(20));
  // Reads one message.
  std::string ReadMessage();
  void Close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Concatenates the payloads of `messages` on `channel` (decoding base64 when asked).
std::string ChannelData(const std::vector<std::string>& messages, unsigned char channel,
                        bool base64 = false);

}  // namespace podvisor::testing
