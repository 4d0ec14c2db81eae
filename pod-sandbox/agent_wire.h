#pragma once

// Checks and converts what the guest sends, and converts what the host sends. Only
// agent_client_impl.cc, host-runtime/, tests and the fuzzer include this (it pulls in the
// generated protobuf header).

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/v1/agent.pb.h"
#include "pod-sandbox/agent_client.h"

namespace podvisor {

inline constexpr size_t kAgentMaxStreamChunk = 1u << 20;

// Accepts only what a well-behaved agent sends: a response with a non-zero id, a valid status and
// (when OK) a result; stream data on a non-zero stream with at most 1 MiB; an event of a known
// kind with valid ids. Any failure means the guest is broken or hostile.
absl::Status ValidateGuestFrame(const agent::v1::Frame& frame);

// Parses and validates one frame payload.
absl::StatusOr<agent::v1::Frame> ParseGuestFrame(const std::string& payload);

// The call's status as the guest reported it (message prefixed with "agent: ").
absl::Status FromWireStatus(const agent::v1::Status& status);

AgentInfo ToAgentInfo(const agent::v1::HelloResponse& hello);
ExitInfo ToExitInfo(const agent::v1::ExitStatus& status);
AgentEvent ToAgentEvent(const agent::v1::Event& event);
std::vector<GuestContainerStats> ToContainerStats(const agent::v1::StatsResponse& stats);
GuestSandboxStats ToSandboxStats(const agent::v1::StatsResponse& stats);
GuestInspection ToInspection(const agent::v1::InspectResponse& inspect);
// A CreateContainer answer's container_user, checked against the user the request asked for: the
// uid and gid it named, every group it listed, and under Strict no other group than those and the
// primary gid. INVALID_ARGUMENT for a malformed user, INTERNAL for one unlike the request's.
absl::StatusOr<ContainerUser> ToContainerUser(const agent::v1::User& resolved,
                                              const agent::v1::User& asked);

// Container and exec ids: [A-Za-z0-9_.-]{1,128}.
bool IsValidAgentId(absl::string_view id);

// The wire form of what the host asks the agent to run (also what the host handler hands to the
// shared OCI config builder, agent/oci_spec.h).
void ToWireProcess(const ProcessSpec& process, agent::v1::Process* out);
void ToWireResources(const ContainerResources& resources, agent::v1::LinuxResources* out);
void ToWireContainerSpec(const ContainerSpec& spec, agent::v1::ContainerSpec* out);

}  // namespace podvisor
