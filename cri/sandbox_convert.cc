#include "cri/sandbox_convert.h"

namespace podvisor::cri {

runtime::v1::PodSandboxState ToProto(SandboxState state) {
  return state == SandboxState::kReady ? runtime::v1::SANDBOX_READY : runtime::v1::SANDBOX_NOTREADY;
}

SandboxState FromProto(runtime::v1::PodSandboxState state) {
  return state == runtime::v1::SANDBOX_READY ? SandboxState::kReady : SandboxState::kNotReady;
}

void ToProto(const Sandbox& sandbox, runtime::v1::PodSandbox* out) {
  const SandboxMetadata& m = sandbox.metadata;
  out->set_id(m.id);
  runtime::v1::PodSandboxMetadata* meta = out->mutable_metadata();
  meta->set_name(m.pod_name);
  meta->set_namespace_(m.pod_namespace);
  meta->set_uid(m.pod_uid);
  meta->set_attempt(m.attempt);
  out->set_state(ToProto(sandbox.status.state));
  out->set_created_at(m.created_at_ns);
  out->mutable_labels()->insert(m.labels.begin(), m.labels.end());
  out->mutable_annotations()->insert(m.annotations.begin(), m.annotations.end());
  out->set_runtime_handler(m.runtime_handler);
}

SandboxFilter FromProto(const runtime::v1::PodSandboxFilter& filter) {
  SandboxFilter out;
  out.id_prefix = filter.id();
  if (filter.has_state()) out.state = FromProto(filter.state().state());
  out.label_selector.insert(filter.label_selector().begin(), filter.label_selector().end());
  return out;
}

}  // namespace podvisor::cri
