#pragma once

// A container's output in this daemon: its log writer, its position file and the agent streams
// its stdio comes through. Private to pod-sandbox (the ContainerController's live state).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_log_writer.h"

namespace podvisor {

// How long a wait for a process may be when nothing bounds it.
inline constexpr absl::Duration kNoExecLimit = absl::Hours(24 * 365);

// Where a container's output position file lives: with the sandbox's host-side files.
std::string OutputPositionPath(const std::string& sandbox_state_dir, const std::string& id);

// The live side of a container in this daemon: where its output goes.
// Attachers see the output next to the log writer; the consumer list and the EOF flags have their
// own lock (taken on the agent's reader thread).
//
// Output positions: bytes of each stream are numbered from the container's first byte. A stream's
// `committed` position is what is in the log file for good (received minus the writer's pending
// partial line). The position file holds six little-endian u64: the committed positions of
// stdout and stderr, the positions once the write under way is done, and that write's log file
// inode and file size after it (0 when no write is under way). It is written just before each log
// write (one write(2) per chunk) and again after it, so a daemon killed at any point can tell
// from the log file's size whether that write happened. Committed positions are acknowledged to
// the guest, which may then release those bytes. A daemon that restarts re-attaches from the
// positions in that file, so the guest replays exactly what the log is missing.
struct ContainerOutput {
  std::shared_ptr<AgentClient> agent;
  std::shared_ptr<ContainerLogWriter> log;
  std::vector<uint32_t> streams;
  uint32_t stdin_stream = 0;
  uint32_t output_stream[2] = {0, 0};  // by LogStream
  int position_fd = -1;

  // Stream callbacks run on the agent's reader thread one at a time; the lock is for
  // ShiftReceived.
  std::mutex positions_mu;
  uint64_t received[2] = {0, 0};
  uint64_t committed[2] = {0, 0};
  uint64_t acked[2] = {0, 0};

  std::mutex consumers_mu;
  std::map<uint64_t, OutputConsumer> consumers;
  uint64_t next_consumer = 1;
  bool eof[2] = {false, false};  // by LogStream

  ~ContainerOutput();

  static constexpr size_t kRecordBytes = 48;

  void WriteRecord(const uint64_t before[2], const uint64_t after[2], uint64_t inode,
                   uint64_t size_after);
  void OnOutput(LogStream which, absl::string_view data, bool end);
  // Reads the positions a previous daemon left (zero when there are none). When it died with a
  // write under way, the log file says whether that write happened.
  static void ReadPositions(int fd, const std::string& log_path, uint64_t out[2]);
  // A restarted daemon learns where the guest really resumed only after bytes may have come.
  void ShiftReceived(int i, uint64_t by);
  void Deliver(LogStream which, absl::string_view data, bool end);
};

}  // namespace podvisor
