#include "agent/output_buffer.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace podvisor::agent {
namespace {

using namespace std::chrono_literals;

// Takes what a sender would send next, and marks it sent.
OutputBuffer::Chunk Take(OutputBuffer& b, size_t max = 1024) {
  OutputBuffer::Chunk c;
  EXPECT_TRUE(b.Next(max, &c));
  b.Sent(c);
  return c;
}

TEST(OutputBufferTest, RetainedBytesAreReplayedToANewSubscriberFromItsOffset) {
  OutputBuffer b(7, /*retain=*/true);
  ASSERT_TRUE(b.Append("hello ", 6));
  OutputBuffer::Chunk c = Take(b);
  EXPECT_EQ(c.stream_id, 7u);
  EXPECT_EQ(c.data, "hello ");
  b.Ack(3);  // the host logged "hel"
  // The host goes away; more output comes meanwhile and is held.
  b.Unsubscribe();
  ASSERT_TRUE(b.Append("world", 5));
  EXPECT_EQ(b.floor(), 3u);
  EXPECT_EQ(b.end(), 11u);
  // A restarted host asks from where its log ends.
  EXPECT_EQ(b.Subscribe(9, 3), 3u);
  c = Take(b);
  EXPECT_EQ(c.stream_id, 9u);
  EXPECT_EQ(c.offset, 3u);
  EXPECT_EQ(c.data, "lo world");
}

TEST(OutputBufferTest, SubscribeStartsNoEarlierThanWhatIsHeld) {
  OutputBuffer b(1, true);
  ASSERT_TRUE(b.Append("abcdef", 6));
  Take(b);
  b.Ack(4);
  EXPECT_EQ(b.Subscribe(2, 0), 4u);
  EXPECT_EQ(Take(b).data, "ef");
}

TEST(OutputBufferTest, AChunkSentToAPreviousSubscriberIsNotCounted) {
  OutputBuffer b(1, true);
  ASSERT_TRUE(b.Append("abc", 3));
  OutputBuffer::Chunk stale;
  ASSERT_TRUE(b.Next(1024, &stale));
  b.Unsubscribe();
  b.Subscribe(2, 0);
  b.Sent(stale);  // the write that was blocked while the host was away
  OutputBuffer::Chunk c = Take(b);
  EXPECT_EQ(c.stream_id, 2u);
  EXPECT_EQ(c.data, "abc");
}

TEST(OutputBufferTest, AFullBufferBlocksThePumpUntilTheHostAcknowledges) {
  OutputBuffer b(1, true, /*limit=*/8);
  ASSERT_TRUE(b.Append("12345678", 8));
  std::atomic<bool> appended{false};
  std::thread pump([&] {
    EXPECT_TRUE(b.Append("9", 1));
    appended = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(appended) << "the pump must wait: nothing may be dropped";
  Take(b);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(appended) << "sent is not acknowledged";
  b.Ack(8);
  pump.join();
  EXPECT_TRUE(appended);
  EXPECT_EQ(Take(b).data, "9");
}

TEST(OutputBufferTest, WithoutAHostTheBufferFillsAndBlocks) {
  OutputBuffer b(1, true, 4);
  b.Unsubscribe();
  ASSERT_TRUE(b.Append("abcd", 4));
  std::atomic<bool> done{false};
  std::thread pump([&] {
    EXPECT_FALSE(b.Append("e", 1));  // closed while waiting
    done = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(done);
  b.Close();
  pump.join();
}

TEST(OutputBufferTest, EofGoesOutAfterTheLastBytesAndAgainAfterAReplay) {
  OutputBuffer b(1, true);
  ASSERT_TRUE(b.Append("x", 1));
  b.MarkEof();
  OutputBuffer::Chunk c = Take(b);
  EXPECT_EQ(c.data, "x");
  EXPECT_TRUE(c.eof);
  EXPECT_TRUE(b.WaitDrained(0ms));
  b.Subscribe(5, 0);
  c = Take(b);
  EXPECT_EQ(c.data, "x");
  EXPECT_TRUE(c.eof);
}

TEST(OutputBufferTest, WithoutRetainBytesGoOnceSentAndAnAbandonedStreamIsDiscarded) {
  OutputBuffer b(1, false, 4);
  ASSERT_TRUE(b.Append("abcd", 4));
  Take(b);
  EXPECT_EQ(b.floor(), 4u);  // released without an acknowledgement
  b.Unsubscribe();
  // Nobody can ever take it: the process must not block.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b.Append("efgh", 4));
  b.MarkEof();
  OutputBuffer::Chunk c;
  EXPECT_FALSE(b.Next(1024, &c));  // the sender is done
}

// An exec session's output (Process.output_window): sent bytes stay until the host acknowledges
// them, so a client that does not read stops the pump; a new host still discards them.
TEST(OutputBufferTest, AWindowedStreamWaitsForAcknowledgementsButIsNotKeptForANewHost) {
  std::shared_ptr<OutputBuffer> b = MakeOutputBuffer(1, /*retain=*/false, /*window=*/64 * 1024);
  EXPECT_TRUE(b->acked());
  const std::string window(64 * 1024, 'w');
  ASSERT_TRUE(b->Append(window.data(), window.size()));
  EXPECT_EQ(Take(*b, window.size()).data.size(), window.size());
  EXPECT_EQ(b->floor(), 0u) << "sent is not released before the host acknowledges it";
  std::atomic<bool> appended{false};
  std::thread pump([&] {
    EXPECT_TRUE(b->Append("more", 4));
    appended = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(appended) << "sent is not acknowledged: the window is full";
  b->Ack(32 * 1024);
  pump.join();
  EXPECT_TRUE(appended);
  EXPECT_EQ(b->floor(), 32u * 1024);
  b->Unsubscribe();  // a new host: nobody acknowledges any more, nothing may block
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(b->Append(window.data(), 1024));
  EXPECT_FALSE(MakeOutputBuffer(2, false, 0)->acked());
}

TEST(OutputBufferTest, ChunksAreBoundedAndInOrder) {
  OutputBuffer b(1, false);
  std::string all;
  for (int i = 0; i < 100; ++i) all += std::to_string(i) + "\n";
  ASSERT_TRUE(b.Append(all.data(), all.size()));
  b.MarkEof();
  std::string got;
  for (;;) {
    OutputBuffer::Chunk c = Take(b, 7);
    EXPECT_LE(c.data.size(), 7u);
    got += c.data;
    if (c.eof) break;
  }
  EXPECT_EQ(got, all);
}

TEST(OutputBufferTest, LongStreamsStayInOrderAcrossReleases) {
  OutputBuffer b(1, /*retain=*/true, 256 * 1024);
  std::string sent_all, got;
  std::thread pump([&] {
    for (int i = 0; i < 20000; ++i) {
      std::string line = std::to_string(i) + "\n";
      ASSERT_TRUE(b.Append(line.data(), line.size()));
    }
    b.MarkEof();
  });
  for (int i = 0; i < 20000; ++i) sent_all += std::to_string(i) + "\n";
  for (;;) {
    OutputBuffer::Chunk c = Take(b, 3000);
    EXPECT_EQ(c.offset, got.size());
    got += c.data;
    b.Ack(got.size() - got.size() % 7);  // acknowledgements lag behind, unaligned
    if (c.eof) break;
  }
  pump.join();
  EXPECT_EQ(got, sent_all);
}

}  // namespace
}  // namespace podvisor::agent
