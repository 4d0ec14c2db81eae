#include "pod-sandbox/agent_frame.h"

#include <gtest/gtest.h>

#include "pod-sandbox/agent_wire.h"

namespace podvisor {
namespace {

namespace v1 = agent::v1;

std::string Header(uint32_t len) {
  std::string h(4, '\0');
  h[0] = static_cast<char>(len >> 24);
  h[1] = static_cast<char>(len >> 16);
  h[2] = static_cast<char>(len >> 8);
  h[3] = static_cast<char>(len);
  return h;
}

TEST(AgentFrameDecoderTest, RoundTripsFramesFedByteByByte) {
  const std::string stream =
      EncodeAgentFrame("hello") + EncodeAgentFrame("") + EncodeAgentFrame(std::string(70000, 'x'));
  AgentFrameDecoder decoder;
  std::vector<std::string> got;
  for (char c : stream) {
    ASSERT_TRUE(decoder.Feed(absl::string_view(&c, 1)).ok());
    while (auto p = decoder.Next()) got.push_back(*p);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "hello");
  EXPECT_EQ(got[1], "");
  EXPECT_EQ(got[2], std::string(70000, 'x'));
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(AgentFrameDecoderTest, ManyFramesInOneRead) {
  std::string stream;
  for (int i = 0; i < 100; ++i) stream += EncodeAgentFrame(std::to_string(i));
  AgentFrameDecoder decoder;
  ASSERT_TRUE(decoder.Feed(stream).ok());
  for (int i = 0; i < 100; ++i) {
    auto p = decoder.Next();
    ASSERT_TRUE(p.has_value()) << i;
    EXPECT_EQ(*p, std::to_string(i));
  }
  EXPECT_FALSE(decoder.Next().has_value());
}

TEST(AgentFrameDecoderTest, TruncatedFrameYieldsNothingUntilComplete) {
  const std::string frame = EncodeAgentFrame("0123456789");
  AgentFrameDecoder decoder;
  ASSERT_TRUE(decoder.Feed(frame.substr(0, 2)).ok());
  EXPECT_FALSE(decoder.Next().has_value());
  ASSERT_TRUE(decoder.Feed(frame.substr(2, 7)).ok());
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_EQ(decoder.buffered(), 9u);
  ASSERT_TRUE(decoder.Feed(frame.substr(9)).ok());
  EXPECT_EQ(decoder.Next().value_or("?"), "0123456789");
}

TEST(AgentFrameDecoderTest, OversizedFrameFailsAtTheHeaderAndStaysFailed) {
  AgentFrameDecoder decoder;
  absl::Status s = decoder.Feed(Header(kAgentMaxFrameBytes + 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("exceeds the limit"), std::string::npos);
  EXPECT_FALSE(decoder.Feed(EncodeAgentFrame("ok")).ok());
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_EQ(decoder.buffered(), 0u);  // nothing kept of the hostile stream
}

TEST(AgentFrameDecoderTest, OversizedFrameAfterAGoodOneIsReported) {
  AgentFrameDecoder decoder(16);
  ASSERT_TRUE(decoder.Feed(EncodeAgentFrame("ok") + Header(17)).ok());
  EXPECT_EQ(decoder.Next().value_or("?"), "ok");
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.status().ok());
}

TEST(AgentFrameDecoderTest, LimitIsInclusive) {
  AgentFrameDecoder decoder(8);
  ASSERT_TRUE(decoder.Feed(EncodeAgentFrame("12345678")).ok());
  EXPECT_EQ(decoder.Next().value_or("?"), "12345678");
}

v1::Frame OkResponse(uint64_t id) {
  v1::Frame f;
  f.set_id(id);
  f.mutable_response()->mutable_empty();
  return f;
}

TEST(GuestFrameTest, AcceptsWellFormedFrames) {
  EXPECT_TRUE(ValidateGuestFrame(OkResponse(7)).ok());
  v1::Frame stream;
  stream.mutable_stream()->set_stream_id(3);
  stream.mutable_stream()->set_data("abc");
  EXPECT_TRUE(ValidateGuestFrame(stream).ok());
  v1::Frame event;
  event.mutable_event()->mutable_process_exited()->set_container_id("c1");
  event.mutable_event()->mutable_process_exited()->mutable_status()->set_exit_code(137);
  event.mutable_event()->mutable_process_exited()->mutable_status()->set_signal(9);
  EXPECT_TRUE(ValidateGuestFrame(event).ok());
  v1::Frame failed;
  failed.set_id(1);
  failed.mutable_response()->mutable_status()->set_code(v1::NOT_FOUND);
  failed.mutable_response()->mutable_status()->set_message("no such container");
  EXPECT_TRUE(ValidateGuestFrame(failed).ok());
  EXPECT_EQ(FromWireStatus(failed.response().status()).code(), absl::StatusCode::kNotFound);
}

TEST(GuestFrameTest, RejectsGarbageAndEmptyPayloads) {
  EXPECT_FALSE(ParseGuestFrame("").ok());  // no body
  EXPECT_FALSE(ParseGuestFrame("\xff\xff\xff\xff\xff").ok());
  EXPECT_FALSE(ParseGuestFrame(std::string(100, '\x0a')).ok());
}

TEST(GuestFrameTest, RejectsWhatAGuestMustNotSend) {
  v1::Frame request;
  request.set_id(1);
  request.mutable_request()->mutable_ping();
  EXPECT_FALSE(ValidateGuestFrame(request).ok());

  EXPECT_FALSE(ValidateGuestFrame(OkResponse(0)).ok());

  v1::Frame no_result;
  no_result.set_id(1);
  no_result.mutable_response();
  EXPECT_FALSE(ValidateGuestFrame(no_result).ok());

  v1::Frame bad_code = OkResponse(1);
  bad_code.mutable_response()->mutable_status()->set_code(static_cast<v1::Code>(99));
  EXPECT_FALSE(ValidateGuestFrame(bad_code).ok());

  v1::Frame failed_with_result = OkResponse(1);
  failed_with_result.mutable_response()->mutable_status()->set_code(v1::INTERNAL);
  EXPECT_FALSE(ValidateGuestFrame(failed_with_result).ok());

  v1::Frame stream0;
  stream0.mutable_stream()->set_stream_id(0);
  EXPECT_FALSE(ValidateGuestFrame(stream0).ok());

  v1::Frame big;
  big.mutable_stream()->set_stream_id(1);
  big.mutable_stream()->set_data(std::string(kAgentMaxStreamChunk + 1, 'a'));
  EXPECT_FALSE(ValidateGuestFrame(big).ok());

  v1::Frame event;
  event.mutable_event()->mutable_oom()->set_container_id("../../etc");
  EXPECT_FALSE(ValidateGuestFrame(event).ok());

  v1::Frame no_kind;
  no_kind.mutable_event();
  EXPECT_FALSE(ValidateGuestFrame(no_kind).ok());

  v1::Frame hello;
  hello.set_id(1);
  const std::string feature = "f";
  for (int i = 0; i < 65; ++i) hello.mutable_response()->mutable_hello()->add_features(feature);
  EXPECT_FALSE(ValidateGuestFrame(hello).ok());

  v1::Frame disk;
  disk.set_id(1);
  disk.mutable_response()->mutable_disk_attached()->set_device("/etc/shadow");
  EXPECT_FALSE(ValidateGuestFrame(disk).ok());

  v1::Frame exit_code;
  exit_code.mutable_event()->mutable_process_exited()->set_container_id("c");
  exit_code.mutable_event()->mutable_process_exited()->mutable_status()->set_exit_code(-5);
  EXPECT_FALSE(ValidateGuestFrame(exit_code).ok());
}

// Inspect answers come from guest root: bounded lists, printable strings, container ids the
// agent could have made.
TEST(GuestFrameTest, InspectAnswersAreBoundedAndPrintable) {
  auto inspect = [] {
    v1::Frame f;
    f.set_id(3);
    v1::InspectResponse* r = f.mutable_response()->mutable_inspect();
    v1::GuestProcess* p = r->add_processes();
    p->set_pid(1);
    p->set_command("/init");
    p->set_state("S");
    v1::GuestMount* m = r->add_mounts();
    m->set_source("rootfs");
    m->set_target("/");
    m->set_fs_type("rootfs");
    m->set_options("rw");
    r->add_disks()->set_name("vdb");
    return f;
  };
  EXPECT_TRUE(ValidateGuestFrame(inspect()).ok());
  v1::Frame control = inspect();
  control.mutable_response()->mutable_inspect()->mutable_processes(0)->set_command("a\nb");
  EXPECT_FALSE(ValidateGuestFrame(control).ok());
  v1::Frame bad_id = inspect();
  bad_id.mutable_response()->mutable_inspect()->mutable_processes(0)->set_container_id("../x");
  EXPECT_FALSE(ValidateGuestFrame(bad_id).ok());
  v1::Frame long_target = inspect();
  long_target.mutable_response()->mutable_inspect()->mutable_mounts(0)->set_target(
      std::string(5000, 'a'));
  EXPECT_FALSE(ValidateGuestFrame(long_target).ok());
  v1::Frame many = inspect();
  for (int i = 0; i < 2048; ++i) many.mutable_response()->mutable_inspect()->add_processes();
  EXPECT_FALSE(ValidateGuestFrame(many).ok());
}

TEST(GuestFrameTest, ListedContainersNeedIdsTheAgentCouldHaveMade) {
  v1::Frame f;
  f.set_id(4);
  v1::ListContainersResponse::Entry* e = f.mutable_response()->mutable_containers()->add_containers();
  e->set_id("c1");
  e->set_state(v1::ListContainersResponse::RUNNING);
  e->set_pid(7);
  EXPECT_TRUE(ValidateGuestFrame(f).ok());
  e->set_id("../../etc");
  EXPECT_FALSE(ValidateGuestFrame(f).ok());
}

v1::Frame CreatedAs(uint32_t uid, uint32_t gid, std::vector<uint32_t> groups) {
  v1::Frame f = OkResponse(5);
  v1::User* u = f.mutable_response()->mutable_container_user();
  u->set_has_uid(true);
  u->set_uid(uid);
  u->set_gid(gid);
  for (uint32_t g : groups) u->add_additional_gids(g);
  return f;
}

// A CreateContainer answer's user has the shape of what setgroups(2) leaves: bounded, ascending,
// each group once, the primary gid among them.
TEST(GuestFrameTest, ContainerUsersAreBoundedSortedAndHoldTheirGid) {
  EXPECT_TRUE(ValidateGuestFrame(CreatedAs(1000, 3000, {3000, 4000, 50000})).ok());
  EXPECT_FALSE(ValidateGuestFrame(CreatedAs(1000, 3000, {4000, 3000})).ok());
  EXPECT_FALSE(ValidateGuestFrame(CreatedAs(1000, 3000, {3000, 3000})).ok());
  EXPECT_FALSE(ValidateGuestFrame(CreatedAs(1000, 3000, {4000})).ok());
  EXPECT_FALSE(ValidateGuestFrame(CreatedAs(1000, 3000, {})).ok());
  std::vector<uint32_t> many;
  for (uint32_t g = 0; g <= 65536; ++g) many.push_back(g);
  EXPECT_FALSE(ValidateGuestFrame(CreatedAs(0, 0, many)).ok());
  many.pop_back();
  EXPECT_TRUE(ValidateGuestFrame(CreatedAs(0, 0, many)).ok());  // NGROUPS_MAX itself
  v1::Frame no_uid = CreatedAs(1000, 3000, {3000});
  no_uid.mutable_response()->mutable_container_user()->set_has_uid(false);
  EXPECT_FALSE(ValidateGuestFrame(no_uid).ok());
  v1::Frame failed = CreatedAs(1000, 3000, {3000});
  failed.mutable_response()->mutable_status()->set_code(v1::INTERNAL);
  failed.mutable_response()->clear_empty();
  EXPECT_FALSE(ValidateGuestFrame(failed).ok());
  v1::Frame other = CreatedAs(1000, 3000, {3000});
  other.mutable_response()->mutable_process_started()->set_pid(7);
  EXPECT_FALSE(ValidateGuestFrame(other).ok());
}

// And it is the user that was asked for: its uid and gid when named, every group listed, and
// under Strict nothing more.
TEST(ContainerUserTest, MustMatchTheRequest) {
  v1::User asked;
  asked.set_has_uid(true);
  asked.set_uid(1000);
  asked.set_gid(3000);
  asked.add_additional_gids(4000);
  auto resolved = [](uint32_t uid, uint32_t gid, std::vector<uint32_t> groups) {
    return CreatedAs(uid, gid, std::move(groups)).response().container_user();
  };
  absl::StatusOr<ContainerUser> merged =
      ToContainerUser(resolved(1000, 3000, {3000, 4000, 50000}), asked);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(*merged, (ContainerUser{1000, 3000, {3000, 4000, 50000}}));
  EXPECT_EQ(ToContainerUser(resolved(0, 3000, {3000, 4000}), asked).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(ToContainerUser(resolved(1000, 0, {0, 4000}), asked).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(ToContainerUser(resolved(1000, 3000, {3000}), asked).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(ToContainerUser(resolved(1000, 3000, {4000}), asked).status().code(),
            absl::StatusCode::kInvalidArgument);  // malformed: the gid is not among them
  asked.set_strict_supplemental_groups(true);
  EXPECT_TRUE(ToContainerUser(resolved(1000, 3000, {3000, 4000}), asked).ok());
  absl::StatusOr<ContainerUser> leaked =
      ToContainerUser(resolved(1000, 3000, {3000, 4000, 50000}), asked);
  EXPECT_EQ(leaked.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(leaked.status().message().find("50000"), std::string::npos) << leaked.status();
  // A name and no group: the uid and gid are the image's to choose.
  v1::User by_name;
  by_name.set_username("app");
  by_name.set_gid_from_passwd(true);
  EXPECT_TRUE(ToContainerUser(resolved(33, 33, {33}), by_name).ok());
}

TEST(GuestFrameTest, IdsAreRestricted) {
  EXPECT_TRUE(IsValidAgentId("3f2a_b-c.d"));
  EXPECT_FALSE(IsValidAgentId(""));
  EXPECT_FALSE(IsValidAgentId(".."));
  EXPECT_FALSE(IsValidAgentId("a/b"));
  EXPECT_FALSE(IsValidAgentId(std::string(129, 'a')));
}

}  // namespace
}  // namespace podvisor
