#include "pod-sandbox/container_streaming_pump.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"

namespace podvisor {
namespace {

// A client's stream: writes block while the gate is shut; `fail` makes them fail (a reset).
class GatedSink : public streaming::ByteSink {
 public:
  bool Write(absl::string_view data) override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(+[](bool* open) { return *open; }, &open_));
    if (fail_) return false;
    written_.append(data.data(), data.size());
    return true;
  }
  void Close() override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  void Open(bool fail = false) {
    absl::MutexLock lock(&mu_);
    fail_ = fail;
    open_ = true;
  }
  std::string written() {
    absl::MutexLock lock(&mu_);
    return written_;
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  bool open_ = false;
  bool fail_ = false;
  bool closed_ = false;
  std::string written_;
};

class Acks {
 public:
  SinkPump::Ack fn() {
    return [this](uint64_t consumed) {
      absl::MutexLock lock(&mu_);
      acks_.push_back(consumed);
    };
  }
  std::vector<uint64_t> get() {
    absl::MutexLock lock(&mu_);
    return acks_;
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> acks_;
};

TEST(SinkPumpTest, AcknowledgesOnlyWhatTheClientTook) {
  GatedSink sink;
  Acks acks;
  SinkPump pump(&sink, {.max_queued = 1 << 20, .ack_every = 64 * 1024}, acks.fn());
  const std::string chunk(64 * 1024, 'o');
  for (int i = 0; i < 4; ++i) pump.Push(chunk, false);
  pump.Push("", true);
  EXPECT_FALSE(pump.WaitFlushed(absl::Milliseconds(200)));
  EXPECT_TRUE(acks.get().empty()) << "nothing reached the client yet";
  sink.Open();
  ASSERT_TRUE(pump.WaitFlushed(absl::Seconds(10)));
  EXPECT_EQ(acks.get(), (std::vector<uint64_t>{65536, 131072, 196608, 262144}));
  EXPECT_EQ(sink.written().size(), 4u * chunk.size());
  EXPECT_TRUE(sink.closed());
  EXPECT_FALSE(pump.overrun());
}

// A guest that ignores its window (or an attacher far behind): the queue does not grow past its
// bound; the stream ends instead.
TEST(SinkPumpTest, AProducerRunningAheadOfTheBoundEndsTheStream) {
  GatedSink sink;
  SinkPump pump(&sink, {.max_queued = 100 * 1024, .ack_every = 0});
  const std::string chunk(64 * 1024, 'f');
  for (int i = 0; i < 1000; ++i) pump.Push(chunk, false);  // 64 MB, were it all kept
  EXPECT_TRUE(pump.overrun());
  sink.Open();
  ASSERT_TRUE(pump.WaitFlushed(absl::Seconds(10)));
  EXPECT_TRUE(sink.closed());
  EXPECT_LE(sink.written().size(), 100u * 1024);
}

// A client that reset its stream: what follows is dropped, yet acknowledged, so the guest is not
// held up by a reader that is gone.
TEST(SinkPumpTest, ABrokenSinkStillAcknowledges) {
  GatedSink sink;
  sink.Open(/*fail=*/true);
  Acks acks;
  SinkPump pump(&sink, {.max_queued = 1 << 20, .ack_every = 32 * 1024}, acks.fn());
  const std::string chunk(32 * 1024, 'b');
  for (int i = 0; i < 4; ++i) pump.Push(chunk, false);
  pump.Push("", true);
  ASSERT_TRUE(pump.WaitFlushed(absl::Seconds(10)));
  EXPECT_TRUE(pump.broken());
  ASSERT_FALSE(acks.get().empty());
  EXPECT_EQ(acks.get().back(), 4u * chunk.size());
}

TEST(SinkPumpTest, WithoutASinkEverythingIsDiscarded) {
  SinkPump pump(nullptr, {});
  pump.Push("x", false);
  pump.Push("", true);
  EXPECT_TRUE(pump.WaitFlushed(absl::ZeroDuration()));
}

}  // namespace
}  // namespace podvisor
