#pragma once

// SPDY/3.1 framing (internal to streaming/): frame encoding, an incremental frame decoder, and the
// zlib name/value header compression with the SPDY/3 dictionary. No I/O here: bytes in, frames
// out, so that the decoder can be fuzzed on its own. Not thread-safe; one instance per connection
// and direction.

#include <zlib.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor::streaming::spdy {

inline constexpr uint16_t kVersion = 3;

enum class FrameType : uint16_t {
  kData = 0,  // not a control frame type; used for data frames
  kSynStream = 1,
  kSynReply = 2,
  kRstStream = 3,
  kSettings = 4,
  kPing = 6,
  kGoAway = 7,
  kHeaders = 8,
  kWindowUpdate = 9,
};

inline constexpr uint8_t kFlagFin = 0x01;
inline constexpr uint8_t kFlagUnidirectional = 0x02;

// RST_STREAM status codes.
enum RstStatus : uint32_t {
  kProtocolError = 1,
  kInvalidStream = 2,
  kRefusedStream = 3,
  kUnsupportedVersion = 4,
  kCancel = 5,
  kInternalError = 6,
  kFlowControlError = 7,
  kStreamInUse = 8,
  kStreamAlreadyClosed = 9,
  kFrameTooLarge = 11,
};

// GOAWAY status codes.
enum GoAwayStatus : uint32_t { kGoAwayOk = 0, kGoAwayProtocolError = 1, kGoAwayInternalError = 2 };

inline constexpr uint32_t kSettingsInitialWindowSize = 7;
inline constexpr int64_t kDefaultWindow = 64 * 1024;
inline constexpr int64_t kMaxWindow = 0x7fffffff;

// Header names are lower case; a value holding several values separates them with NUL bytes.
using Headers = std::vector<std::pair<std::string, std::string>>;

// The first value of header `name` (lower case), or empty.
std::string HeaderValue(const Headers& headers, absl::string_view name);

struct Setting {
  uint8_t flags = 0;
  uint32_t id = 0;
  uint32_t value = 0;
};

// One decoded frame. Which fields are meaningful depends on `type`.
struct Frame {
  FrameType type = FrameType::kData;
  uint8_t flags = 0;
  uint32_t stream_id = 0;        // DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE
  uint32_t associated_id = 0;    // SYN_STREAM
  uint8_t priority = 0;          // SYN_STREAM
  std::string data;              // DATA payload
  Headers headers;               // SYN_STREAM, SYN_REPLY, HEADERS
  uint32_t status = 0;           // RST_STREAM, GOAWAY
  uint32_t ping_id = 0;          // PING
  uint32_t last_good_stream_id = 0;  // GOAWAY
  uint32_t delta_window = 0;     // WINDOW_UPDATE
  std::vector<Setting> settings;  // SETTINGS
};

// The SPDY/3 header compression dictionary (1423 bytes).
const std::string& HeaderDictionary();

// Compresses name/value blocks for one direction of one connection: a single zlib stream shared by
// all the blocks of that direction, flushed (Z_SYNC_FLUSH) after each block.
class HeaderCompressor {
 public:
  HeaderCompressor();
  ~HeaderCompressor();
  HeaderCompressor(const HeaderCompressor&) = delete;
  HeaderCompressor& operator=(const HeaderCompressor&) = delete;
  std::string Compress(const Headers& headers);

 private:
  z_stream zs_{};
  bool ok_ = false;
};

// Decompresses the name/value blocks of one direction. After an error the stream is unusable and
// the connection must end.
class HeaderDecompressor {
 public:
  HeaderDecompressor();
  ~HeaderDecompressor();
  HeaderDecompressor(const HeaderDecompressor&) = delete;
  HeaderDecompressor& operator=(const HeaderDecompressor&) = delete;
  absl::StatusOr<Headers> Decompress(absl::string_view block);

 private:
  z_stream zs_{};
  bool ok_ = false;
};

// Serializes a name/value block (before compression).
std::string EncodeHeaderBlock(const Headers& headers);
// Parses a decompressed name/value block; names must be lower case, no name twice.
absl::StatusOr<Headers> ParseHeaderBlock(absl::string_view block);

// Incremental decoder: Append() bytes as they arrive and call Next() until it returns nullopt.
class FrameDecoder {
 public:
  // Frames whose payload exceeds `max_payload` are an error (the connection ends).
  explicit FrameDecoder(size_t max_payload = 16 * 1024 * 1024);
  void Append(absl::string_view bytes);
  // The next complete frame, nullopt when more bytes are needed, or an error (INVALID_ARGUMENT)
  // for malformed input; after an error the decoder stays failed. Control frames of unknown
  // types are skipped, as the SPDY/3 draft requires.
  absl::StatusOr<std::optional<Frame>> Next();
  // Bytes received but not yet decoded.
  size_t buffered() const { return buffer_.size() - offset_; }

 private:
  absl::StatusOr<std::optional<Frame>> DecodeControl(uint16_t version, uint16_t type,
                                                     uint8_t flags, absl::string_view payload);
  std::string buffer_;
  size_t offset_ = 0;
  size_t max_payload_;
  absl::Status failed_;
  HeaderDecompressor headers_;
};

// Frame encoders. Header-carrying frames take the connection's compressor.
std::string EncodeData(uint32_t stream_id, uint8_t flags, absl::string_view data);
std::string EncodeSynStream(HeaderCompressor& compressor, uint32_t stream_id,
                            uint32_t associated_id, uint8_t flags, const Headers& headers);
std::string EncodeSynReply(HeaderCompressor& compressor, uint32_t stream_id, uint8_t flags,
                           const Headers& headers);
std::string EncodeHeaders(HeaderCompressor& compressor, uint32_t stream_id, uint8_t flags,
                          const Headers& headers);
std::string EncodeRstStream(uint32_t stream_id, uint32_t status);
std::string EncodeSettings(const std::vector<Setting>& settings);
std::string EncodePing(uint32_t id);
std::string EncodeGoAway(uint32_t last_good_stream_id, uint32_t status);
std::string EncodeWindowUpdate(uint32_t stream_id, uint32_t delta);

}  // namespace podvisor::streaming::spdy
