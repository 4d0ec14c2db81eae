#include "streaming/spdy_framer.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace podvisor::streaming::spdy {
namespace {

// Header blocks larger than this after decompression end the connection (compression bombs).
constexpr size_t kMaxHeaderBlock = 256 * 1024;
constexpr uint32_t kMaxHeaderPairs = 1024;

void PutU32(std::string& out, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
               static_cast<char>(v)};
  out.append(b, 4);
}

void PutU24(std::string& out, uint32_t v) {
  char b[3] = {static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 3);
}

uint32_t GetU32(absl::string_view s, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

std::string ControlHeader(FrameType type, uint8_t flags, size_t length) {
  std::string out;
  out.reserve(8 + length);
  PutU32(out, 0x80000000u | (uint32_t{kVersion} << 16) | static_cast<uint16_t>(type));
  out.push_back(static_cast<char>(flags));
  PutU24(out, static_cast<uint32_t>(length));
  return out;
}

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed SPDY frame: ", what));
}

// The dictionary is the length-prefixed words below followed by a tail of status codes, dates
// and common values (SPDY/3 draft, section 2.6.10.1).
std::string BuildDictionary() {
  static const char* const kWords[] = {
      "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
      "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
      "cache-control", "connection", "content-base", "content-encoding", "content-language",
      "content-length", "content-location", "content-md5", "content-range", "content-type",
      "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
      "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
      "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
      "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
      "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
      "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"};
  std::string dict;
  for (const char* word : kWords) {
    PutU32(dict, static_cast<uint32_t>(std::strlen(word)));
    dict.append(word);
  }
  dict.append(
      "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
      "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
      "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
      "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
      "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/"
      "xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,"
      "sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.");
  return dict;
}

}  // namespace

const std::string& HeaderDictionary() {
  static const std::string* dict = new std::string(BuildDictionary());
  return *dict;
}

std::string HeaderValue(const Headers& headers, absl::string_view name) {
  for (const auto& [n, v] : headers) {
    if (n == name) {
      size_t nul = v.find('\0');
      return nul == std::string::npos ? v : v.substr(0, nul);
    }
  }
  return "";
}

HeaderCompressor::HeaderCompressor() {
  ok_ = deflateInit(&zs_, Z_DEFAULT_COMPRESSION) == Z_OK;
  if (ok_) {
    const std::string& dict = HeaderDictionary();
    ok_ = deflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(dict.data()),
                               static_cast<uInt>(dict.size())) == Z_OK;
  }
}

HeaderCompressor::~HeaderCompressor() { deflateEnd(&zs_); }

std::string HeaderCompressor::Compress(const Headers& headers) {
  std::string raw = EncodeHeaderBlock(headers);
  std::string out;
  if (!ok_) return out;
  zs_.next_in = reinterpret_cast<Bytef*>(raw.data());
  zs_.avail_in = static_cast<uInt>(raw.size());
  char chunk[4096];
  do {
    zs_.next_out = reinterpret_cast<Bytef*>(chunk);
    zs_.avail_out = sizeof chunk;
    if (deflate(&zs_, Z_SYNC_FLUSH) == Z_STREAM_ERROR) {
      ok_ = false;
      return "";
    }
    out.append(chunk, sizeof chunk - zs_.avail_out);
  } while (zs_.avail_out == 0);
  return out;
}

HeaderDecompressor::HeaderDecompressor() { ok_ = inflateInit(&zs_) == Z_OK; }

HeaderDecompressor::~HeaderDecompressor() { inflateEnd(&zs_); }

absl::StatusOr<Headers> HeaderDecompressor::Decompress(absl::string_view block) {
  if (!ok_) return Malformed("header decompressor failed earlier");
  std::string out;
  zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
  zs_.avail_in = static_cast<uInt>(block.size());
  char chunk[4096];
  for (;;) {
    zs_.next_out = reinterpret_cast<Bytef*>(chunk);
    zs_.avail_out = sizeof chunk;
    int rc = inflate(&zs_, Z_SYNC_FLUSH);
    if (rc == Z_NEED_DICT) {
      const std::string& dict = HeaderDictionary();
      if (inflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(dict.data()),
                               static_cast<uInt>(dict.size())) != Z_OK) {
        ok_ = false;
        return Malformed("header block uses an unknown dictionary");
      }
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      ok_ = false;
      return Malformed(absl::StrCat("header block does not inflate (zlib ", rc, ")"));
    }
    size_t produced = sizeof chunk - zs_.avail_out;
    out.append(chunk, produced);
    if (out.size() > kMaxHeaderBlock) {
      ok_ = false;
      return Malformed("header block too large");
    }
    // Done when all input is consumed and zlib had room left (nothing more pending).
    if (zs_.avail_in == 0 && zs_.avail_out != 0) break;
    if (rc == Z_BUF_ERROR && produced == 0) break;  // no progress possible
  }
  if (zs_.avail_in != 0) {
    ok_ = false;
    return Malformed("header block has trailing bytes");
  }
  absl::StatusOr<Headers> headers = ParseHeaderBlock(out);
  if (!headers.ok()) ok_ = false;
  return headers;
}

std::string EncodeHeaderBlock(const Headers& headers) {
  std::string out;
  PutU32(out, static_cast<uint32_t>(headers.size()));
  for (const auto& [name, value] : headers) {
    PutU32(out, static_cast<uint32_t>(name.size()));
    out.append(absl::AsciiStrToLower(name));
    PutU32(out, static_cast<uint32_t>(value.size()));
    out.append(value);
  }
  return out;
}

absl::StatusOr<Headers> ParseHeaderBlock(absl::string_view block) {
  if (block.size() < 4) return Malformed("truncated header block");
  uint32_t count = GetU32(block, 0);
  if (count > kMaxHeaderPairs) return Malformed("too many headers");
  size_t at = 4;
  Headers headers;
  headers.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    std::string parts[2];
    for (std::string& part : parts) {
      if (block.size() - at < 4) return Malformed("truncated header block");
      uint32_t len = GetU32(block, at);
      at += 4;
      if (len > block.size() - at) return Malformed("truncated header block");
      part.assign(block.data() + at, len);
      at += len;
    }
    if (parts[0].empty()) return Malformed("empty header name");
    if (absl::AsciiStrToLower(parts[0]) != parts[0]) return Malformed("header name not lower case");
    for (const auto& existing : headers) {
      if (existing.first == parts[0]) return Malformed("duplicate header name");
    }
    headers.emplace_back(std::move(parts[0]), std::move(parts[1]));
  }
  if (at != block.size()) return Malformed("header block has trailing bytes");
  return headers;
}

FrameDecoder::FrameDecoder(size_t max_payload) : max_payload_(max_payload) {}

void FrameDecoder::Append(absl::string_view bytes) {
  if (offset_ > 0 && offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  } else if (offset_ > 64 * 1024 && offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

absl::StatusOr<std::optional<Frame>> FrameDecoder::Next() {
  while (true) {
    if (!failed_.ok()) return failed_;
    absl::string_view rest(buffer_.data() + offset_, buffer_.size() - offset_);
    if (rest.size() < 8) return std::nullopt;
    uint32_t first = GetU32(rest, 0);
    uint32_t second = GetU32(rest, 4);
    uint8_t flags = static_cast<uint8_t>(second >> 24);
    size_t length = second & 0xffffff;
    if (length > max_payload_) {
      failed_ = Malformed(absl::StrCat("frame of ", length, " bytes exceeds the limit"));
      return failed_;
    }
    if (rest.size() < 8 + length) return std::nullopt;
    absl::string_view payload = rest.substr(8, length);
    offset_ += 8 + length;
    if ((first & 0x80000000u) == 0) {
      Frame frame;
      frame.type = FrameType::kData;
      frame.stream_id = first & 0x7fffffff;
      frame.flags = flags;
      if (frame.stream_id == 0) {
        failed_ = Malformed("data frame on stream 0");
        return failed_;
      }
      frame.data.assign(payload.data(), payload.size());
      return std::optional<Frame>(std::move(frame));
    }
    uint16_t version = static_cast<uint16_t>((first >> 16) & 0x7fff);
    uint16_t type = static_cast<uint16_t>(first & 0xffff);
    absl::StatusOr<std::optional<Frame>> frame = DecodeControl(version, type, flags, payload);
    if (!frame.ok()) {
      failed_ = frame.status();
      return failed_;
    }
    if (frame->has_value()) return frame;
    // An unknown control frame: skipped.
  }
}

absl::StatusOr<std::optional<Frame>> FrameDecoder::DecodeControl(uint16_t version, uint16_t type,
                                                                  uint8_t flags,
                                                                  absl::string_view payload) {
  if (version != kVersion) return Malformed(absl::StrCat("unsupported SPDY version ", version));
  Frame frame;
  frame.flags = flags;
  frame.type = static_cast<FrameType>(type);
  auto need = [&](size_t n, bool exact) -> absl::Status {
    if (payload.size() < n || (exact && payload.size() != n)) {
      return Malformed(absl::StrCat("control frame type ", type, " has length ", payload.size()));
    }
    return absl::OkStatus();
  };
  auto headers_from = [&](size_t at) -> absl::Status {
    absl::StatusOr<Headers> h = headers_.Decompress(payload.substr(at));
    if (!h.ok()) return h.status();
    frame.headers = std::move(*h);
    return absl::OkStatus();
  };
  absl::Status s;
  switch (frame.type) {
    case FrameType::kSynStream:
      if (!(s = need(10, false)).ok()) return s;
      frame.stream_id = GetU32(payload, 0) & 0x7fffffff;
      frame.associated_id = GetU32(payload, 4) & 0x7fffffff;
      frame.priority = static_cast<uint8_t>(static_cast<uint8_t>(payload[8]) >> 5);
      if (!(s = headers_from(10)).ok()) return s;
      break;
    case FrameType::kSynReply:
    case FrameType::kHeaders:
      if (!(s = need(4, false)).ok()) return s;
      frame.stream_id = GetU32(payload, 0) & 0x7fffffff;
      if (!(s = headers_from(4)).ok()) return s;
      break;
    case FrameType::kRstStream:
      if (!(s = need(8, true)).ok()) return s;
      frame.stream_id = GetU32(payload, 0) & 0x7fffffff;
      frame.status = GetU32(payload, 4);
      break;
    case FrameType::kSettings: {
      if (!(s = need(4, false)).ok()) return s;
      uint32_t count = GetU32(payload, 0);
      if (count > (payload.size() - 4) / 8 || payload.size() != 4 + size_t{count} * 8) {
        return Malformed("SETTINGS length does not match its entry count");
      }
      for (uint32_t i = 0; i < count; ++i) {
        uint32_t word = GetU32(payload, 4 + i * 8);
        frame.settings.push_back(
            {static_cast<uint8_t>(word >> 24), word & 0xffffff, GetU32(payload, 8 + i * 8)});
      }
      break;
    }
    case FrameType::kPing:
      if (!(s = need(4, true)).ok()) return s;
      frame.ping_id = GetU32(payload, 0);
      break;
    case FrameType::kGoAway:
      if (!(s = need(8, true)).ok()) return s;
      frame.last_good_stream_id = GetU32(payload, 0) & 0x7fffffff;
      frame.status = GetU32(payload, 4);
      break;
    case FrameType::kWindowUpdate:
      if (!(s = need(8, true)).ok()) return s;
      frame.stream_id = GetU32(payload, 0) & 0x7fffffff;
      frame.delta_window = GetU32(payload, 4) & 0x7fffffff;
      break;
    default:
      return std::optional<Frame>();
  }
  if ((frame.type == FrameType::kSynStream || frame.type == FrameType::kSynReply ||
       frame.type == FrameType::kRstStream || frame.type == FrameType::kHeaders) &&
      frame.stream_id == 0) {
    return Malformed("stream id 0");
  }
  return std::optional<Frame>(std::move(frame));
}

std::string EncodeData(uint32_t stream_id, uint8_t flags, absl::string_view data) {
  std::string out;
  out.reserve(8 + data.size());
  PutU32(out, stream_id & 0x7fffffff);
  out.push_back(static_cast<char>(flags));
  PutU24(out, static_cast<uint32_t>(data.size()));
  out.append(data.data(), data.size());
  return out;
}

std::string EncodeSynStream(HeaderCompressor& compressor, uint32_t stream_id,
                            uint32_t associated_id, uint8_t flags, const Headers& headers) {
  std::string block = compressor.Compress(headers);
  std::string out = ControlHeader(FrameType::kSynStream, flags, 10 + block.size());
  PutU32(out, stream_id & 0x7fffffff);
  PutU32(out, associated_id & 0x7fffffff);
  out.push_back('\0');  // priority 0
  out.push_back('\0');  // slot
  out.append(block);
  return out;
}

std::string EncodeSynReply(HeaderCompressor& compressor, uint32_t stream_id, uint8_t flags,
                           const Headers& headers) {
  std::string block = compressor.Compress(headers);
  std::string out = ControlHeader(FrameType::kSynReply, flags, 4 + block.size());
  PutU32(out, stream_id & 0x7fffffff);
  out.append(block);
  return out;
}

std::string EncodeHeaders(HeaderCompressor& compressor, uint32_t stream_id, uint8_t flags,
                          const Headers& headers) {
  std::string block = compressor.Compress(headers);
  std::string out = ControlHeader(FrameType::kHeaders, flags, 4 + block.size());
  PutU32(out, stream_id & 0x7fffffff);
  out.append(block);
  return out;
}

std::string EncodeRstStream(uint32_t stream_id, uint32_t status) {
  std::string out = ControlHeader(FrameType::kRstStream, 0, 8);
  PutU32(out, stream_id & 0x7fffffff);
  PutU32(out, status);
  return out;
}

std::string EncodeSettings(const std::vector<Setting>& settings) {
  std::string out = ControlHeader(FrameType::kSettings, 0, 4 + 8 * settings.size());
  PutU32(out, static_cast<uint32_t>(settings.size()));
  for (const Setting& s : settings) {
    PutU32(out, (uint32_t{s.flags} << 24) | (s.id & 0xffffff));
    PutU32(out, s.value);
  }
  return out;
}

std::string EncodePing(uint32_t id) {
  std::string out = ControlHeader(FrameType::kPing, 0, 4);
  PutU32(out, id);
  return out;
}

std::string EncodeGoAway(uint32_t last_good_stream_id, uint32_t status) {
  std::string out = ControlHeader(FrameType::kGoAway, 0, 8);
  PutU32(out, last_good_stream_id & 0x7fffffff);
  PutU32(out, status);
  return out;
}

std::string EncodeWindowUpdate(uint32_t stream_id, uint32_t delta) {
  std::string out = ControlHeader(FrameType::kWindowUpdate, 0, 8);
  PutU32(out, stream_id & 0x7fffffff);
  PutU32(out, delta & 0x7fffffff);
  return out;
}

}  // namespace podvisor::streaming::spdy
