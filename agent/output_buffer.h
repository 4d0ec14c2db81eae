#pragma once

// One output stream of a process (stdout, stderr or a terminal) between the pipe the agent reads
// and the host: a bounded buffer, the host's current subscription (stream id) and what was sent
// on it. The pump thread appends what it reads; a sender thread takes chunks and writes them to
// the channel. Bytes are numbered from the stream's first byte.
//
// With `retain` (the host acknowledges output, Process.acked_output) bytes stay until the host
// acknowledges them, so a host that restarts can re-attach (Subscribe) and get everything it did
// not consume yet. Without it, bytes are released once written to the channel. Either way, while
// no host takes them (disconnected, not re-attached yet) they stay here, and once `limit` bytes
// are held Append() blocks: the pump stops reading and the container blocks on its next write
// rather than losing output.
//
// With `release_on_ack` (and no retain: an exec session's output, Process.output_window) bytes
// also stay until acknowledged, which is the host's flow control: `limit` is then the window of
// bytes read from the pipe and not yet consumed by the session's client. A new host never takes
// such output over: Unsubscribe() discards it, as without retain.
//
// Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace podvisor::agent {

class OutputBuffer {
 public:
  static constexpr size_t kDefaultLimit = 1u << 20;

  OutputBuffer(uint32_t stream_id, bool retain, size_t limit = kDefaultLimit,
               bool release_on_ack = false);

  // Pump side. Waits while `limit` bytes are held; false once Close()d (the bytes are dropped).
  bool Append(const char* data, size_t n);
  void MarkEof();

  struct Chunk {
    uint32_t stream_id = 0;
    uint64_t offset = 0;
    std::string data;
    bool eof = false;
    uint64_t generation = 0;
  };
  // Sender side. Waits until there is something to send on a subscribed stream (up to
  // `max_bytes`, with eof once it reaches the end of an ended stream); false once Close()d, and
  // without retain once the end went out (nobody can ask for it again).
  bool Next(size_t max_bytes, Chunk* out);
  // The chunk is written to the channel (ignored if the subscription changed meanwhile).
  void Sent(const Chunk& chunk);

  // Host side. The host consumed everything before `offset` (retain mode).
  void Ack(uint64_t offset);
  // Delivery goes to `stream_id` from `offset` on (clamped to what is held). Returns the offset
  // where it starts.
  uint64_t Subscribe(uint32_t stream_id, uint64_t offset);
  // Nobody takes the output now (the host went away). Without retain nobody ever will: what
  // comes is discarded instead of blocking the process.
  void Unsubscribe();
  // Waits (up to `timeout`) until the pump saw EOF and, when subscribed, everything was sent.
  bool WaitDrained(std::chrono::milliseconds timeout);
  // Stops everything: Append and Next return false.
  void Close();

  uint32_t stream_id() const;
  bool retain() const { return retain_; }
  // Bytes are released by Ack() (retain or release_on_ack).
  bool acked() const { return retain_ || release_on_ack_; }
  // [first held byte, end).
  uint64_t floor() const;
  uint64_t end() const;

 private:
  void ReleaseTo(uint64_t offset);                      // requires mu_
  size_t held() const { return data_.size() - head_; }  // requires mu_

  const bool retain_;
  const bool release_on_ack_;
  const size_t limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Bytes [floor_, end) are data_[head_, data_.size()); released bytes before head_ are dropped
  // from the string only once they are half of it (amortised, no memmove per release).
  std::string data_;
  size_t head_ = 0;
  uint64_t floor_ = 0;
  uint32_t stream_id_;     // 0: not subscribed
  uint64_t sent_ = 0;      // next byte to send on stream_id_
  bool eof_ = false;       // the pump reached the end
  bool eof_sent_ = false;  // ... and that went out on stream_id_
  bool discard_ = false;
  bool closed_ = false;
  uint64_t generation_ = 0;
};

// The buffer of a process's output stream: `retain` for a container's own output that a
// restarted host may take over; `window` (Process.output_window, non-zero) for output the host
// acknowledges as its client consumes it, at most `window` bytes in flight (clamped to 64 KiB..
// 16 MiB).
std::shared_ptr<OutputBuffer> MakeOutputBuffer(uint32_t stream_id, bool retain, uint32_t window);

}  // namespace podvisor::agent
