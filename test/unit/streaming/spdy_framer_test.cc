#include "streaming/spdy_framer.h"

#include <zlib.h>

#include <gtest/gtest.h>

namespace podvisor::streaming::spdy {
namespace {

std::vector<Frame> DecodeAll(FrameDecoder& decoder, absl::Status* error = nullptr) {
  std::vector<Frame> frames;
  for (;;) {
    absl::StatusOr<std::optional<Frame>> frame = decoder.Next();
    if (!frame.ok()) {
      if (error != nullptr) *error = frame.status();
      break;
    }
    if (!frame->has_value()) break;
    frames.push_back(std::move(**frame));
  }
  return frames;
}

TEST(SpdyDictionaryTest, MatchesTheSpdy3Dictionary) {
  const std::string& dict = HeaderDictionary();
  EXPECT_EQ(dict.size(), 1423u);
  uLong sum = adler32(1L, reinterpret_cast<const Bytef*>(dict.data()), dict.size());
  EXPECT_EQ(sum, 0xe3c6a7c2u);
}

TEST(SpdyFramerTest, SynStreamRoundTripsThroughSharedCompressionContext) {
  HeaderCompressor compressor;
  // Blocks must be decoded in the order they were compressed.
  std::string wire = EncodeSynStream(compressor, 1, 0, 0, {{"streamtype", "error"}});
  wire += EncodeSynStream(compressor, 3, 0, kFlagFin, {{"streamtype", "stdout"}, {"port", "80"}});
  FrameDecoder decoder;
  decoder.Append(wire);
  absl::Status error;
  std::vector<Frame> frames = DecodeAll(decoder, &error);
  ASSERT_TRUE(error.ok()) << error;
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].type, FrameType::kSynStream);
  EXPECT_EQ(frames[0].stream_id, 1u);
  EXPECT_EQ(HeaderValue(frames[0].headers, "streamtype"), "error");
  EXPECT_EQ(frames[1].stream_id, 3u);
  EXPECT_EQ(frames[1].flags, kFlagFin);
  EXPECT_EQ(HeaderValue(frames[1].headers, "port"), "80");
}

// A header block compressed by plain zlib with the dictionary (as any SPDY peer does) decodes.
TEST(SpdyFramerTest, DecodesBlocksFromAnIndependentZlibCompressor) {
  z_stream zs{};
  ASSERT_EQ(deflateInit(&zs, Z_BEST_COMPRESSION), Z_OK);
  const std::string& dict = HeaderDictionary();
  ASSERT_EQ(deflateSetDictionary(&zs, reinterpret_cast<const Bytef*>(dict.data()), dict.size()),
            Z_OK);
  std::string raw = EncodeHeaderBlock({{"streamtype", "stdin"}});
  std::string compressed(1024, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(raw.data());
  zs.avail_in = raw.size();
  zs.next_out = reinterpret_cast<Bytef*>(compressed.data());
  zs.avail_out = compressed.size();
  ASSERT_EQ(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
  compressed.resize(compressed.size() - zs.avail_out);
  deflateEnd(&zs);

  std::string payload = std::string("\0\0\0\x05\0\0\0\0\0\0", 10) + compressed;
  std::string wire = {static_cast<char>(0x80), 0x03, 0x00, 0x01, 0x00};
  wire.push_back(static_cast<char>(payload.size() >> 16));
  wire.push_back(static_cast<char>(payload.size() >> 8));
  wire.push_back(static_cast<char>(payload.size()));
  wire += payload;
  FrameDecoder decoder;
  decoder.Append(wire);
  absl::Status error;
  std::vector<Frame> frames = DecodeAll(decoder, &error);
  ASSERT_TRUE(error.ok()) << error;
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].stream_id, 5u);
  EXPECT_EQ(HeaderValue(frames[0].headers, "streamtype"), "stdin");
}

TEST(SpdyFramerTest, DecodesFramesSplitAtEveryByte) {
  HeaderCompressor compressor;
  std::string wire = EncodeSynReply(compressor, 1, 0, {});
  wire += EncodeData(1, kFlagFin, "hello") + EncodePing(7) + EncodeWindowUpdate(1, 4096) + EncodeGoAway(3, 0) +
                     EncodeRstStream(3, kCancel) +
                     EncodeSettings({{0, kSettingsInitialWindowSize, 1 << 20}});
  FrameDecoder decoder;
  std::vector<Frame> frames;
  for (char c : wire) {
    decoder.Append(std::string(1, c));
    for (Frame& f : DecodeAll(decoder)) frames.push_back(std::move(f));
  }
  ASSERT_EQ(frames.size(), 7u);
  EXPECT_EQ(frames[0].type, FrameType::kSynReply);
  EXPECT_EQ(frames[1].data, "hello");
  EXPECT_EQ(frames[1].flags, kFlagFin);
  EXPECT_EQ(frames[2].ping_id, 7u);
  EXPECT_EQ(frames[3].delta_window, 4096u);
  EXPECT_EQ(frames[4].last_good_stream_id, 3u);
  EXPECT_EQ(frames[5].status, kCancel);
  ASSERT_EQ(frames[6].settings.size(), 1u);
  EXPECT_EQ(frames[6].settings[0].value, 1u << 20);
}

TEST(SpdyFramerTest, SkipsUnknownControlFrames) {
  std::string unknown = {static_cast<char>(0x80), 0x03, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x02, 'x',
                         'y'};
  FrameDecoder decoder;
  decoder.Append(unknown + EncodePing(1));
  std::vector<Frame> frames = DecodeAll(decoder);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, FrameType::kPing);
}

struct MalformedCase {
  const char* name;
  std::string bytes;
};

TEST(SpdyFramerTest, RejectsMalformedFrames) {
  std::vector<MalformedCase> cases = {
      {"data on stream 0", EncodeData(0, 0, "x")},
      {"wrong version", {static_cast<char>(0x80), 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1}},
      {"short ping", {static_cast<char>(0x80), 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 1}},
      {"rst stream 0", EncodeRstStream(0, 1)},
      {"settings count mismatch",
       {static_cast<char>(0x80), 0x03, 0x00, 0x04, 0, 0, 0, 4, 0, 0, 0, 9}},
      {"garbage header block",
       std::string({static_cast<char>(0x80), 0x03, 0x00, 0x02, 0, 0, 0, 8, 0, 0, 0, 1}) +
           "junk"},
  };
  for (const MalformedCase& c : cases) {
    FrameDecoder decoder;
    decoder.Append(c.bytes);
    absl::Status error;
    DecodeAll(decoder, &error);
    EXPECT_FALSE(error.ok()) << c.name;
    // The decoder stays failed.
    decoder.Append(EncodePing(1));
    EXPECT_FALSE(decoder.Next().ok()) << c.name;
  }
}

TEST(SpdyFramerTest, RejectsFramesAboveTheLimit) {
  FrameDecoder decoder(1024);
  decoder.Append(EncodeData(1, 0, std::string(2048, 'x')).substr(0, 8));
  EXPECT_FALSE(decoder.Next().ok());
}

TEST(SpdyFramerTest, ParseHeaderBlockRejectsBadBlocks) {
  EXPECT_FALSE(ParseHeaderBlock("").ok());
  std::string upper = EncodeHeaderBlock({{"x", "1"}});
  upper[8] = 'X';
  EXPECT_FALSE(ParseHeaderBlock(upper).ok());
  EXPECT_FALSE(ParseHeaderBlock(EncodeHeaderBlock({{"a", "1"}, {"a", "2"}})).ok());
  std::string truncated = EncodeHeaderBlock({{"abc", "def"}});
  truncated.pop_back();
  EXPECT_FALSE(ParseHeaderBlock(truncated).ok());
  std::string huge_count = EncodeHeaderBlock({});
  huge_count[0] = 0x7f;
  EXPECT_FALSE(ParseHeaderBlock(huge_count).ok());
}

TEST(SpdyFramerTest, MultiValuedHeaderKeepsTheFirstValue) {
  EXPECT_EQ(HeaderValue({{"x-stream", std::string("a\0b", 3)}}, "x-stream"), "a");
  EXPECT_EQ(HeaderValue({}, "x"), "");
}

}  // namespace
}  // namespace podvisor::streaming::spdy
