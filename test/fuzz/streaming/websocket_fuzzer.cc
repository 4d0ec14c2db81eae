// Feeds arbitrary bytes, after a valid handshake, to a server-side WebSocket (Boost.Beast's frame
// parser: lengths, masking, fragmentation, control frames, text validation) and every message it
// yields to the channel decoder of the Kubernetes channel protocols (WebSocketCore), in the mode
// the first byte picks (binary or base64, with or without v5's CLOSE signal). Checks: no crash,
// no hang, no channel holding more than what arrived.
//
// Build: CC=clang CXX=clang++ cmake -DPODVISOR_BUILD_FUZZERS=ON ...; ninja websocket_fuzzer.
// Run: fuzz/websocket_fuzzer -max_total_time=60 corpus/
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "streaming/websocket_connection.h"

namespace beast = boost::beast;
namespace streaming = podvisor::streaming;

namespace {

// The channel decoder alone: no socket behind it.
class Channels : public streaming::WebSocketCore {
 public:
  Channels(bool base64, bool close_signal, std::vector<bool> readable)
      : WebSocketCore(base64, close_signal, readable.size(), readable) {}
  bool Deliver(absl::string_view message) {
    absl::MutexLock lock(&mu_);
    const bool ok = DeliverLocked(message);
    (void)ShouldPauseLocked();
    return ok;
  }

 private:
  void ScheduleWriteLocked() override {}
  void ResumeReadLocked() override {}
};

constexpr char kHandshake[] =
    "GET /exec/token HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  boost::asio::io_context io;
  beast::test::stream client(io);
  beast::test::stream server_end(io);
  client.connect(server_end);
  client.append(std::string(kHandshake) +
                std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  client.close();  // the server reads the bytes, then end of stream
  beast::websocket::stream<beast::test::stream&> ws(server_end);
  ws.read_message_max(streaming::kMaxWebSocketMessage);
  beast::error_code ec;
  ws.accept(ec);
  if (ec) return 0;
  const bool base64 = (mode & 1) != 0;
  const bool close_signal = (mode & 2) != 0;
  std::vector<bool> readable = {true, false, false, false, true};
  Channels channels(base64, close_signal, readable);
  size_t received = 0;
  for (int messages = 0; messages < 100000; ++messages) {
    beast::flat_buffer buffer;
    ws.read(buffer, ec);
    if (ec) break;
    const std::string message = beast::buffers_to_string(buffer.data());
    if (message.size() > streaming::kMaxWebSocketMessage) std::abort();
    received += message.size();
    if (!channels.Deliver(message)) break;
  }
  (void)received;
  return 0;
}
