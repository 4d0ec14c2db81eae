// ContainerController across a daemon restart: records, log positions, and what a crash left
// (container_output.cc, container_reconcile.cc).

#include "test/unit/pod-sandbox/container_controller_fixture.h"

namespace podvisor {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using testing::FakeAgentClient;
using testing::FakeHypervisor;
using testing::FakeImageController;
using testing::FakePodNetworkManager;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

TEST_F(ContainerControllerTest, RecordsSurviveARestartAndLostSandboxesExitTheirContainers) {
  std::string id = CreateAndStart(Config());
  // The VM vanishes while the daemon is down: a new controller over the same records.
  ASSERT_TRUE(sandbox_store_
                  ->Update(sandbox_id_,
                           [](SandboxStatus& st) {
                             st.state = SandboxState::kNotReady;
                             return absl::OkStatus();
                           })
                  .ok());
  ContainerStore reloaded(records_.get(), "container");
  ASSERT_TRUE(reloaded.Load().ok());
  ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                            sandboxes_.get(), &hypervisor_, &images_);
  ASSERT_TRUE(again.Recover().ok());
  absl::StatusOr<Container> c = again.Inspect(id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status.state, ContainerState::kExited);
  EXPECT_EQ(c->metadata.config.labels.at("tier"), "front");
  EXPECT_EQ(c->metadata.layers.size(), 2u);
  // ContainerStatus.user after the restart: what the agent said at create, from the record.
  ASSERT_TRUE(c->metadata.resolved_user.has_value());
  EXPECT_EQ(c->metadata.resolved_user->uid, 1000u);
  EXPECT_EQ(c->metadata.resolved_user->gid, 50u);  // the image's "1000:50"
  EXPECT_THAT(c->metadata.resolved_user->supplemental_groups, ElementsAre(50u));
}

TEST_F(ContainerControllerTest, ARestartedDaemonTakesTheOutputOverWhereTheLogEnds) {
  ContainerConfig config = Config();
  config.stdin = true;
  std::string id = CreateAndStart(config);
  const ContainerSpec spec = log_->created.back().second;
  EXPECT_TRUE(spec.process.acked_output);
  // A whole line and the start of the next: only the whole line is in the log for good.
  agent_->EmitStream(spec.process.stdout_stream, "one\ntw", false);
  agent_->EmitStream(spec.process.stderr_stream, "err1\n", false);

  // A new daemon over the same records (the VM lives on), as after kill -9.
  ContainerStore reloaded(records_.get(), "container");
  ASSERT_TRUE(reloaded.Load().ok());
  ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                            sandboxes_.get(), &hypervisor_, &images_);
  ASSERT_TRUE(again.Recover().ok());
  std::vector<std::pair<std::string, OutputAttach>> attaches = agent_->attaches();
  ASSERT_EQ(attaches.size(), 1u);
  const OutputAttach& a = attaches[0].second;
  EXPECT_EQ(attaches[0].first, id);
  EXPECT_EQ(a.stdout_offset, 4u);
  EXPECT_EQ(a.stderr_offset, 5u);
  EXPECT_NE(a.stdout_stream, 0u);
  EXPECT_NE(a.stdout_stream, spec.process.stdout_stream);
  EXPECT_NE(a.stdin_stream, 0u);

  // Attach works on the container from before the restart.
  std::string attached;
  absl::StatusOr<uint64_t> handle =
      again.AddOutputConsumer(id, [&](LogStream which, absl::string_view data, bool) {
        if (which == LogStream::kStdout) attached.append(data.data(), data.size());
      });
  ASSERT_TRUE(handle.ok()) << handle.status();

  // The guest replays from offset 4: the cut line comes whole, then what followed.
  agent_->EmitStream(a.stdout_stream, "two\nthree\n", false);
  agent_->EmitStream(a.stderr_stream, "err2\n", false);
  EXPECT_EQ(attached, "two\nthree\n");
  EXPECT_TRUE(again.ReopenLog(id).ok());
  ExitInfo exit;
  agent_->SimulateExit(id, "", exit);
  // The new daemon learns of the exit from its own wait (this fake answers on a thread).
  absl::StatusOr<Container> c;
  for (int i = 0; i < 100; ++i) {
    c = again.Inspect(id);
    if (c.ok() && c->status.state == ContainerState::kExited) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status.state, ContainerState::kExited);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the waiter thread returns
  EXPECT_THAT(ReadAll(c->metadata.log_path),
              ::testing::MatchesRegex("[0-9TZ:.-]+ stdout F one\n[0-9TZ:.-]+ stderr F err1\n"
                                      "[0-9TZ:.-]+ stdout F two\n[0-9TZ:.-]+ stdout F three\n"
                                      "[0-9TZ:.-]+ stderr F err2\n"));
}

// The position file as the daemon leaves it when killed between its record and its log write.
void WriteIntent(const std::string& path, uint64_t before_out, uint64_t after_out, uint64_t inode,
                 uint64_t size_after) {
  const uint64_t v[6] = {before_out, 0, after_out, 0, inode, size_after};
  std::string buf(48, '\0');
  for (size_t k = 0; k < 48; ++k) buf[k] = static_cast<char>(v[k / 8] >> (8 * (k % 8)));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << buf;
}

TEST_F(ContainerControllerTest, ARestartTellsFromTheLogWhetherTheWriteUnderWayHappened) {
  std::string id = CreateAndStart(Config());
  const ContainerSpec spec = log_->created.back().second;
  agent_->EmitStream(spec.process.stdout_stream, "one\n", false);
  absl::StatusOr<Container> c = containers_->Inspect(id);
  ASSERT_TRUE(c.ok());
  const std::string pos =
      sandbox_store_->Get(sandbox_id_)->metadata.state_dir + "/output-" + id + ".pos";
  ASSERT_TRUE(std::filesystem::exists(pos));
  struct stat st;
  ASSERT_EQ(::stat(c->metadata.log_path.c_str(), &st), 0);
  const uint64_t size = static_cast<uint64_t>(st.st_size);

  auto recovered_offset = [&]() -> uint64_t {
    ContainerStore reloaded(records_.get(), "container");
    EXPECT_TRUE(reloaded.Load().ok());
    ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                              sandboxes_.get(), &hypervisor_, &images_);
    EXPECT_TRUE(again.Recover().ok());
    auto attaches = agent_->attaches();
    return attaches.empty() ? ~0ull : attaches.back().second.stdout_offset;
  };
  // Killed after recording "one\n" + "two\n" as under way, before writing it: from 4.
  WriteIntent(pos, 4, 8, st.st_ino, size + 40);
  EXPECT_EQ(recovered_offset(), 4u);
  // Killed after the write, before recording it as done: the file is that long, from 8.
  WriteIntent(pos, 4, 8, st.st_ino, size);
  EXPECT_EQ(recovered_offset(), 8u);
  // The file was rotated meanwhile: not the file of the record; from 4 (a line twice at worst,
  // never one lost).
  WriteIntent(pos, 4, 8, st.st_ino + 1, size);
  EXPECT_EQ(recovered_offset(), 4u);
}

TEST_F(ContainerControllerTest, LoggedOutputIsAcknowledgedToTheGuestInLargeSteps) {
  std::string id = CreateAndStart(Config());
  const ContainerSpec spec = log_->created.back().second;
  const uint32_t out = spec.process.stdout_stream;
  const std::string line = std::string(1023, 'x') + "\n";
  for (int i = 0; i < 255; ++i) agent_->EmitStream(out, line, false);
  EXPECT_FALSE(agent_->acks().contains(out)) << "under 256 KiB: no acknowledgement yet";
  // The start of a line is not in the log yet: not acknowledged.
  agent_->EmitStream(out, line + "abc", false);
  EXPECT_EQ(agent_->acks()[out], 256u * 1024);
}

// Session streams for the streaming runtime tests.

TEST_F(ContainerControllerTest, RecoveryReleasesWhatACrashedCreateLeft) {
  const std::string kept = CreateAndStart(Config("kept"));
  ImageMetadata other;
  other.id = "sha256:ef01";
  other.config.cmd = {"/bin/true"};
  const std::string kLayer2 =
      "/images/layers/"
      "sha256-3333333333333333333333333333333333333333333333333333333333333333.erofs";
  images_.AddImage("other:latest", other, {kLayer0, kLayer2});
  ASSERT_EQ(
      ::system(("mkdir -p " + dir_.Join("vol") + " && echo v > " + dir_.Join("vol/a")).c_str()), 0);
  ContainerConfig config = Config("lost");
  config.image = "other:latest";
  config.mounts = {{"/config", dir_.Join("vol"), true}};
  absl::StatusOr<std::string> lost = containers_->Create(sandbox_id_, config);
  ASSERT_TRUE(lost.ok()) << lost.status();
  const Container lost_record = *containers_->Inspect(*lost);
  ASSERT_EQ(lost_record.metadata.volumes.size(), 1u);
  const std::string snapshot = lost_record.metadata.volumes[0].disk.path;
  const std::string position =
      sandbox_store_->Get(sandbox_id_)->metadata.state_dir + "/output-" + *lost + ".pos";
  ASSERT_TRUE(std::filesystem::exists(snapshot));
  ASSERT_TRUE(std::filesystem::exists(position));
  ASSERT_EQ(hypervisor_.SpecOf(sandbox_id_)->disks.size(), 4u);  // 2 + 1 new layer + 1 volume
  // The record never reached the disk.
  ASSERT_TRUE(container_store_->Remove(*lost).ok());

  ContainerStore reloaded(records_.get(), "container");
  ASSERT_TRUE(reloaded.Load().ok());
  ContainerController again(ContainerControllerOptions{}, &reloaded, sandbox_store_.get(),
                            sandboxes_.get(), &hypervisor_, &images_);
  ASSERT_TRUE(again.Recover().ok());

  EXPECT_THAT(log_->removed, ElementsAre(*lost));
  absl::StatusOr<std::vector<GuestContainer>> guest = agent_->ListContainers(absl::Seconds(1));
  ASSERT_TRUE(guest.ok());
  ASSERT_EQ(guest->size(), 1u);
  EXPECT_EQ((*guest)[0].id, kept);
  const std::optional<VmSpec> vm = hypervisor_.SpecOf(sandbox_id_);
  std::vector<std::string> disks;
  for (const VmDisk& d : vm->disks) disks.push_back(d.id);
  const absl::StatusOr<Container> kept_record = again.Inspect(kept);
  ASSERT_TRUE(kept_record.ok());
  std::vector<std::string> kept_disks;
  for (const LayerDisk& d : kept_record->metadata.layers) kept_disks.push_back(d.serial);
  EXPECT_THAT(disks, ::testing::UnorderedElementsAreArray(kept_disks));
  EXPECT_EQ(log_->disks_detached.size(), 2u);  // the lost layer and the lost volume
  EXPECT_FALSE(std::filesystem::exists(snapshot));
  EXPECT_FALSE(std::filesystem::exists(position));
  EXPECT_TRUE(std::filesystem::exists(sandbox_store_->Get(sandbox_id_)->metadata.state_dir +
                                      "/output-" + kept + ".pos"));
  EXPECT_EQ(again.Inspect(kept)->status.state, ContainerState::kRunning);
}

// Shared-directory binds of a container without a record go; the recorded container's and
// anything that is not a container's directory stay.
TEST_F(ContainerControllerTest, ReconcileRemovesSharedDirectoriesNoRecordOwns) {
  const std::string kept = CreateAndStart(Config("kept"));
  Sandbox sandbox = *sandbox_store_->Get(sandbox_id_);
  sandbox.metadata.shared_dir = dir_.Join("shared");
  const std::string lost(64, 'a');
  for (const std::string& d : {kept + "/0", lost + "/0", std::string("pod-files")}) {
    std::filesystem::create_directories(sandbox.metadata.shared_dir + "/" + d);
  }
  std::ofstream(sandbox.metadata.shared_dir + "/" + lost + "/0/data") << "x";
  absl::StatusOr<ReconcileResult> r = containers_->Reconcile(sandbox);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared_dirs, ElementsAre(lost));
  EXPECT_TRUE(r->guest_containers.empty());
  EXPECT_TRUE(r->disks.empty());
  EXPECT_FALSE(std::filesystem::exists(sandbox.metadata.shared_dir + "/" + lost));
  EXPECT_TRUE(std::filesystem::exists(sandbox.metadata.shared_dir + "/" + kept + "/0"));
  EXPECT_TRUE(std::filesystem::exists(sandbox.metadata.shared_dir + "/pod-files"));
}

// A guest that cannot list its containers leaves everything where it is (nothing is removed on
// a guess) and recovery still succeeds.
TEST_F(ContainerControllerTest, ReconcileWithoutAnAnswerRemovesNothing) {
  const std::string kept = CreateAndStart(Config("kept"));
  ASSERT_TRUE(container_store_->Remove(kept).ok());
  agent_->list_result = absl::UnavailableError("the guest is busy");
  absl::StatusOr<ReconcileResult> r = containers_->Reconcile(*sandbox_store_->Get(sandbox_id_));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(log_->removed.empty());
  EXPECT_EQ(hypervisor_.SpecOf(sandbox_id_)->disks.size(), 2u);
}

}  // namespace
}  // namespace podvisor
