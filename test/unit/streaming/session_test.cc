#include "streaming/session.h"

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"

namespace podvisor::streaming {
namespace {

TEST(StatusJsonTest, SuccessIsTheBareStatus) {
  EXPECT_EQ(SuccessStatusJson(), R"({"metadata":{},"status":"Success"})");
}

TEST(StatusJsonTest, NonZeroExitCarriesTheCodeInCauses) {
  nlohmann::json status = nlohmann::json::parse(ExitCodeStatusJson(42));
  EXPECT_EQ(status["status"], "Failure");
  EXPECT_EQ(status["reason"], "NonZeroExitCode");
  ASSERT_EQ(status["details"]["causes"].size(), 1u);
  EXPECT_EQ(status["details"]["causes"][0]["reason"], "ExitCode");
  EXPECT_EQ(status["details"]["causes"][0]["message"], "42");
}

TEST(StatusJsonTest, InternalErrorHasCode500) {
  nlohmann::json status = nlohmann::json::parse(InternalErrorStatusJson("boom"));
  EXPECT_EQ(status["status"], "Failure");
  EXPECT_EQ(status["reason"], "InternalError");
  EXPECT_EQ(status["code"], 500);
  EXPECT_EQ(status["message"], "Internal error occurred: boom");
}

class StringSource : public ByteSource {
 public:
  explicit StringSource(std::vector<std::string> chunks) : chunks_(std::move(chunks)) {}
  size_t Read(char* buf, size_t len) override {
    if (next_ == chunks_.size()) return 0;
    std::string& c = chunks_[next_++];
    size_t n = std::min(len, c.size());
    std::memcpy(buf, c.data(), n);
    return n;
  }
  void Cancel() override {}

 private:
  std::vector<std::string> chunks_;
  size_t next_ = 0;
};

TEST(ResizeDecoderTest, DecodesObjectsSplitAcrossReads) {
  StringSource source({"{\"Width\":80,", "\"Height\":24}{\"Width\":1", "00,\"Height\":40}\n"});
  ResizeDecoder decoder(&source);
  std::optional<TerminalSize> a = decoder.Next();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->width, 80);
  EXPECT_EQ(a->height, 24);
  std::optional<TerminalSize> b = decoder.Next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->width, 100);
  EXPECT_EQ(b->height, 40);
  EXPECT_FALSE(decoder.Next().has_value());
}

TEST(ResizeDecoderTest, StopsAtMalformedInput) {
  StringSource source({"{\"Width\":80,\"Height\":24}", "not json"});
  ResizeDecoder decoder(&source);
  EXPECT_TRUE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.Next().has_value());
}

TEST(ResizeDecoderTest, RejectsOutOfRangeSizes) {
  StringSource source({"{\"Width\":70000,\"Height\":24}"});
  ResizeDecoder decoder(&source);
  EXPECT_FALSE(decoder.Next().has_value());
}

}  // namespace
}  // namespace podvisor::streaming
