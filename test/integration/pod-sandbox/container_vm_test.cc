// Containers inside real pod VMs: the real podvisord pulls a busybox image from a docker-registry
// on loopback (through a registry mirror), boots a QEMU guest (TCG), and runs containers in it
// with crun through the guest agent; logs, exit codes, stop, exec and stats are checked as a CRI
// client sees them.

// clang-format off
#include "test/integration/pod-sandbox/container_vm_fixture.h"  // first: CRI Signal vs <signal.h>
// clang-format on

#include <sys/stat.h>

#include <string>
#include <tuple>
#include <vector>

namespace podvisor::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST_F(ContainerVmTest, RunsContainersLogsExitsExecAndStop) {
  // echo hello: the log file in the CRI format, byte for byte but the time.
  std::string hello = Run(Config("hello", {"echo", "hello"}));
  ASSERT_FALSE(hello.empty());
  v1::ContainerStatus st = WaitExited(hello);
  EXPECT_EQ(st.exit_code(), 0);
  EXPECT_EQ(st.reason(), "Completed");
  EXPECT_GT(st.started_at(), 0);
  EXPECT_GE(st.finished_at(), st.started_at());
  EXPECT_EQ(st.log_path(), dir_.Join("logs/hello.log"));
  EXPECT_EQ(st.image().image(), kImage);
  std::string log = ReadAll(dir_.Join("logs/hello.log"));
  EXPECT_THAT(log, MatchesRegex(absl::StrCat(kTime, " stdout F hello\n"))) << log;

  // A failure, with stderr, and CRI env + args over the image's.
  v1::ContainerConfig fail = Config("fail", {"sh", "-c"});
  fail.add_args("echo \"$GREETING\" >&2; exit 1");
  v1::KeyValue* env = fail.add_envs();
  env->set_key("GREETING");
  env->set_value("from cri");
  std::string failed = Run(fail);
  st = WaitExited(failed);
  EXPECT_EQ(st.exit_code(), 1);
  EXPECT_EQ(st.reason(), "Error");
  log = ReadAll(dir_.Join("logs/fail.log"));
  EXPECT_THAT(log, MatchesRegex(absl::StrCat(kTime, " stderr F from cri\n"))) << log;

  // A long-running container with a read-only root filesystem, next to the others.
  v1::ContainerConfig sleeper = Config("sleeper", {"sleep", "1000"});
  sleeper.mutable_linux()->mutable_security_context()->set_readonly_rootfs(true);
  std::string sleeping = Run(sleeper);
  EXPECT_EQ(Status(sleeping).state(), v1::CONTAINER_RUNNING);

  v1::ExecSyncResponse out;
  grpc::Status s = Exec(sleeping, {"echo", "hi"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "hi\n");
  EXPECT_EQ(out.exit_code(), 0);
  out.Clear();
  // The pod's DNS config and hostname, as kubelet asked, inside the container.
  s = Exec(sleeping, {"cat", "/etc/resolv.conf", "/etc/hostname"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(out.stdout(), HasSubstr("nameserver 10.96.0.10\n"));
  EXPECT_THAT(out.stdout(), HasSubstr("search default.svc.cluster.local\n"));
  EXPECT_THAT(out.stdout(), HasSubstr("options ndots:5\n"));
  EXPECT_THAT(out.stdout(), HasSubstr("pod\n"));
  out.Clear();
  s = Exec(sleeping, {"sh", "-c", "echo err >&2; exit 3"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stderr(), "err\n");
  EXPECT_EQ(out.exit_code(), 3);
  out.Clear();
  s = Exec(sleeping, {"touch", "/x"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(out.exit_code(), 0);
  EXPECT_THAT(out.stderr(), HasSubstr("Read-only file system"));
  out.Clear();
  s = Exec(sleeping, {"sleep", "100"}, 2, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();

  v1::ContainerStatsRequest stats_req;
  stats_req.set_container_id(sleeping);
  v1::ContainerStatsResponse stats;
  s = cri_->runtime().ContainerStats(CriClient::Context().get(), stats_req, &stats);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(stats.stats().memory().working_set_bytes().value(), 0u);
  EXPECT_GT(stats.stats().cpu().usage_core_nano_seconds().value(), 0u);

  v1::ListContainersResponse list;
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 3);

  // sleep as PID 1 of its container ignores SIGTERM: killed after the grace period.
  ASSERT_TRUE(Stop(sleeping, 2).ok());
  st = Status(sleeping);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 137);

  // A process that handles SIGTERM exits on its own within the grace period.
  std::string graceful =
      Run(Config("graceful", {"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"}));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_TRUE(Stop(graceful, 30).ok());
  st = Status(graceful);
  EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
  EXPECT_EQ(st.exit_code(), 0);

  // Stop without grace.
  std::string killed = Run(Config("killed", {"sleep", "1000"}));
  ASSERT_TRUE(Stop(killed, 0).ok());
  EXPECT_EQ(Status(killed).exit_code(), 137);

  for (const std::string& id : {hello, failed, sleeping, graceful, killed}) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    v1::RemoveContainerResponse resp;
    s = cri_->runtime().RemoveContainer(CriClient::Context(60).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  list.Clear();
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 0);
}

TEST_F(ContainerVmTest, RootfsIsTheOverlayOfAllLayersWithAWritableUpper) {
  v1::ContainerConfig c = Config("layered", {"sleep", "1000"});
  c.mutable_image()->set_image(kLayered);
  std::string layered = Run(c);
  ASSERT_FALSE(layered.empty());
  // A container of the one-layer image shares the busybox layer disk; read-only host volumes
  // (a directory and a file) reach it as snapshots.
  ASSERT_EQ(::system(("mkdir -p " + dir_.Join("vol") + " && echo from-host > " +
                      dir_.Join("vol/cfg") + " && echo tok > " + dir_.Join("token"))
                         .c_str()),
            0);
  v1::ContainerConfig pc = Config("plain", {"sleep", "1000"});
  v1::Mount* m = pc.add_mounts();
  m->set_container_path("/config");
  m->set_host_path(dir_.Join("vol"));
  m->set_readonly(true);
  m = pc.add_mounts();
  m->set_container_path("/tmp/token");
  m->set_host_path(dir_.Join("token"));
  m->set_readonly(true);
  std::string plain = Run(pc);
  ASSERT_FALSE(plain.empty());
  {
    v1::ExecSyncResponse vol;
    grpc::Status vs = Exec(plain, {"sh", "-c", "cat /config/cfg /tmp/token"}, 60, &vol);
    ASSERT_TRUE(vs.ok()) << vs.error_message();
    EXPECT_EQ(vol.stdout(), "from-host\ntok\n") << vol.stderr();
  }
  v1::ExecSyncResponse out;
  grpc::Status s = Exec(layered, {"sh", "-c", "cat /data/msg; ls /data"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "upper\nmsg\n") << out.stderr();
  out.Clear();
  s = Exec(layered, {"sh", "-c", "echo new > /data/msg && cat /data/msg"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "new\n") << out.stderr();
  out.Clear();
  s = Exec(plain, {"sh", "-c", "ls /data 2>&1; echo rc=$?"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(out.stdout(), HasSubstr("No such file"));
  for (const std::string& id : {layered, plain}) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    v1::RemoveContainerResponse resp;
    s = cri_->runtime().RemoveContainer(CriClient::Context(60).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  // With the disks unplugged a new container of the image attaches them again.
  std::string again = Run(c);
  ASSERT_FALSE(again.empty());
  out.Clear();
  s = Exec(again, {"cat", "/data/msg"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "upper\n");
}

// hostUsers: false (CRI userns_options mode POD): the pod's containers run in one user namespace
// of the guest with the pod's mappings, their root filesystem owned by its root; a capability
// there is none over the VM's own namespaces.
TEST_F(ContainerVmTest, UserNamespacePodMapsIdsAndOwnsItsRootfs) {
  v1::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod_);
  v1::RemovePodSandboxResponse rm_resp;
  ASSERT_TRUE(cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), rm, &rm_resp).ok());
  pod_.clear();
  v1::NamespaceOption userns_ns;
  v1::UserNamespace* u = userns_ns.mutable_userns_options();
  u->set_mode(v1::POD);
  for (v1::IDMapping* m : {u->add_uids(), u->add_gids()}) {
    m->set_container_id(0);
    m->set_host_id(65536);
    m->set_length(65536);
  }
  pod_config_.mutable_metadata()->set_name("userns");
  pod_config_.mutable_metadata()->set_uid("uid-userns");
  pod_config_.clear_port_mappings();
  *pod_config_.mutable_linux()->mutable_security_context()->mutable_namespace_options() = userns_ns;
  v1::RunPodSandboxRequest run;
  *run.mutable_config() = pod_config_;
  v1::RunPodSandboxResponse ran;
  grpc::Status s = cri_->runtime().RunPodSandbox(CriClient::Context(300).get(), run, &ran);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << daemon_->ReadLog();
  pod_ = ran.pod_sandbox_id();
  v1::PodSandboxStatusRequest status_req;
  status_req.set_pod_sandbox_id(pod_);
  v1::PodSandboxStatusResponse status;
  ASSERT_TRUE(
      cri_->runtime().PodSandboxStatus(CriClient::Context().get(), status_req, &status).ok());
  EXPECT_EQ(status.status().linux().namespaces().options().userns_options().mode(), v1::POD);

  // As kubelet sends it: the container's namespace options carry the pod's user namespace.
  auto in_userns = [&](v1::ContainerConfig c) {
    v1::NamespaceOption* ns =
        c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    *ns->mutable_userns_options() = userns_ns.userns_options();
    return c;
  };
  v1::ContainerConfig c = in_userns(Config("ids", {"sleep", "1000"}));
  c.mutable_image()->set_image(kLayered);
  // A writable host directory (as kubelet makes emptyDir: mode 0777).
  const std::string vol = dir_.Join("userns-vol");
  ASSERT_TRUE(fs::create_directories(vol));
  fs::permissions(vol, fs::perms::all);
  v1::Mount* m = c.add_mounts();
  m->set_container_path("/vol");
  m->set_host_path(vol);
  c.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_add_capabilities(
      "SYS_ADMIN");
  std::string id = Run(c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  v1::ExecSyncResponse out;
  s = Exec(id, {"sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map | tr -s ' '"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), " 0 65536 65536\n 0 65536 65536\n") << out.stderr();
  // Root of the namespace owns the image's files (every layer's) and writes where root may.
  out.Clear();
  s = Exec(id,
           {"sh", "-c",
            "id -u; stat -c %u:%g / /bin/busybox /data/msg /etc; echo x > /etc/new && "
            "stat -c %u:%g /etc/new; echo y > /data/msg && cat /data/msg"},
           60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "0\n0:0\n0:0\n0:0\n0:0\n0:0\ny\n") << out.stderr();
  // Volumes are not idmapped: what the container's root writes is the guest's id 65536 on the
  // node, and the node's root-owned files are nobody's in the container.
  out.Clear();
  s = Exec(id, {"sh", "-c", "echo hi > /vol/f && stat -c %u:%g /vol/f /vol"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "0:0\n65534:65534\n") << out.stderr();
  struct stat written {};
  ASSERT_EQ(::stat((vol + "/f").c_str(), &written), 0);
  EXPECT_EQ(written.st_uid, 65536u);
  EXPECT_EQ(written.st_gid, 65536u);
  // CAP_SYS_ADMIN in the user namespace is none over the VM's UTS namespace.
  out.Clear();
  s = Exec(id, {"hostname", "not-the-pods"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(out.exit_code(), 0) << out.stdout();
  out.Clear();
  s = Exec(id, {"hostname"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "pod\n");

  // The container's own process (started by crun, not the agent) is in the namespace too, and
  // a second container joins the same one.
  std::string init = Run(in_userns(Config("uidmap", {"cat", "/proc/self/uid_map"})));
  ASSERT_FALSE(init.empty());
  EXPECT_EQ(WaitExited(init).exit_code(), 0);
  EXPECT_THAT(ReadAll(dir_.Join("logs/uidmap.log")),
              MatchesRegex(absl::StrCat(kTime, " stdout F +0 +65536 +65536\n")));
  out.Clear();
  s = Exec(id, {"sh", "-c", "readlink /proc/self/ns/user"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::ExecSyncResponse other;
  std::string second = Run(in_userns(Config("second", {"sleep", "1000"})));
  ASSERT_FALSE(second.empty());
  s = Exec(second, {"sh", "-c", "readlink /proc/self/ns/user"}, 60, &other);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(other.stdout(), out.stdout());
  EXPECT_THAT(out.stdout(), HasSubstr("user:["));

  // Sharing the pod's PID namespace (CRI pid POD, what critest asks for): it is the user
  // namespace's own, so /proc mounts; its PID 1 is not the agent.
  v1::ContainerConfig shared = in_userns(Config("shared-pid", {"sleep", "1000"}));
  shared.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::POD);
  std::string shared_id = Run(shared);
  ASSERT_FALSE(shared_id.empty()) << daemon_->ReadLog();
  v1::ExecSyncResponse shared_out;
  s = Exec(shared_id, {"sh", "-c", "cat /proc/self/uid_map | tr -s ' '; cat /proc/1/comm"}, 60,
           &shared_out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(shared_out.stdout(), HasSubstr(" 0 65536 65536\n")) << shared_out.stderr();
  EXPECT_THAT(shared_out.stdout(), ::testing::EndsWith("\npause\n"));
  ASSERT_TRUE(Stop(shared_id, 0).ok());
  EXPECT_EQ(Status(shared_id).exit_code(), 137);

  // A container asking for other mappings than its pod's is refused.
  v1::ContainerConfig wrong = in_userns(Config("wrong", {"true"}));
  wrong.mutable_linux()
      ->mutable_security_context()
      ->mutable_namespace_options()
      ->mutable_userns_options()
      ->mutable_uids(0)
      ->set_host_id(131072);
  EXPECT_EQ(TryCreate(wrong).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// CRI Mount.image: an image's layers, stacked read-only, at a path of a container of another
// image; image_sub_path picks a directory or a file of it. The image stays in use while mounted.
TEST_F(ContainerVmTest, ImageVolumesMountAnImageReadOnly) {
  v1::ContainerConfig c = Config("with-image", {"sleep", "1000"});
  auto image_mount = [&](const std::string& path, const std::string& sub) {
    v1::Mount* m = c.add_mounts();
    m->set_container_path(path);
    m->mutable_image()->set_image(kLayered);
    m->set_image_sub_path(sub);
    m->set_readonly(true);
  };
  image_mount("/img", "");
  image_mount("/data-only", "data");
  image_mount("/etc/msg", "data/msg");
  std::string id = Run(c);
  ASSERT_FALSE(id.empty()) << daemon_->ReadLog();
  v1::ExecSyncResponse out;
  grpc::Status s = Exec(id,
                        {"sh", "-c",
                         "cat /img/data/msg /data-only/msg /etc/msg; ls /img/data; "
                         "ls /data-only; test -x /img/bin/busybox && echo has-busybox"},
                        60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // The upper layer's file, the deleted one gone: the image as its own containers see it.
  EXPECT_EQ(out.stdout(), "upper\nupper\nupper\nmsg\nmsg\nhas-busybox\n") << out.stderr();
  out.Clear();
  s = Exec(id,
           {"sh", "-c",
            "echo x > /img/data/msg 2>/dev/null; echo img=$?; touch /data-only/new 2>/dev/null; "
            "echo sub=$?; echo x > /etc/msg 2>/dev/null; echo file=$?; cat /etc/msg"},
           60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "img=1\nsub=1\nfile=1\nupper\n") << out.stderr();
  // The status reports the mounts as asked for.
  v1::ContainerStatus st = Status(id);
  ASSERT_EQ(st.mounts_size(), 3);
  EXPECT_EQ(st.mounts(1).image().image(), kLayered);
  EXPECT_EQ(st.mounts(1).image_sub_path(), "data");
  EXPECT_TRUE(st.mounts(1).readonly());

  // A sub path the image does not have, an image that is not pulled, a path out of the image.
  for (const auto& [image, sub, code] :
       std::vector<std::tuple<std::string, std::string, grpc::StatusCode>>{
           {kLayered, "data/none", grpc::StatusCode::NOT_FOUND},
           {"docker.io/library/never-pulled:1", "", grpc::StatusCode::NOT_FOUND},
           {kLayered, "../etc", grpc::StatusCode::INVALID_ARGUMENT}}) {
    v1::ContainerConfig bad = Config("bad", {"true"});
    v1::Mount* m = bad.add_mounts();
    m->set_container_path("/img");
    m->mutable_image()->set_image(image);
    m->set_image_sub_path(sub);
    m->set_readonly(true);
    s = TryCreate(bad);
    EXPECT_EQ(s.error_code(), code) << image << " " << sub << ": " << s.error_message();
  }
  // An image a container mounts is in use: RemoveImage drops its names (as containerd does),
  // the image stays by its id, and its layer disks stay, though the failed creates above undid
  // theirs.
  v1::ImageStatusRequest by_name;
  by_name.mutable_image()->set_image(kLayered);
  v1::ImageStatusResponse named;
  ASSERT_TRUE(cri_->image().ImageStatus(CriClient::Context().get(), by_name, &named).ok());
  const std::string image_id = named.image().id();
  ASSERT_FALSE(image_id.empty());
  v1::RemoveImageRequest rm;
  rm.mutable_image()->set_image(kLayered);
  v1::RemoveImageResponse removed;
  s = cri_->image().RemoveImage(CriClient::Context().get(), rm, &removed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::ImageStatusRequest by_id;
  by_id.mutable_image()->set_image(image_id);
  v1::ImageStatusResponse kept;
  ASSERT_TRUE(cri_->image().ImageStatus(CriClient::Context().get(), by_id, &kept).ok());
  EXPECT_EQ(kept.image().id(), image_id) << "an image a volume uses was deleted";
  out.Clear();
  s = Exec(id, {"cat", "/img/data/msg"}, 60, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.stdout(), "upper\n");

  v1::RemoveContainerRequest rc;
  rc.set_container_id(id);
  v1::RemoveContainerResponse rcr;
  ASSERT_TRUE(cri_->runtime().RemoveContainer(CriClient::Context(60).get(), rc, &rcr).ok());
}

TEST_F(ContainerVmTest, ServerInAContainerAnswersOnPodIpAndHostPort) {
  std::string server = Run(Config(
      "web", {"/bin/busybox", "sh", "-c",
              "mkdir -p /www && echo served-from-the-pod-vm > /www/index.html && "
              "exec /bin/busybox httpd -f -p 8080 -h /www"}));
  ASSERT_FALSE(server.empty());
  v1::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(pod_);
  v1::PodSandboxStatusResponse status;
  ASSERT_TRUE(cri_->runtime().PodSandboxStatus(CriClient::Context().get(), req, &status).ok());
  const std::string ip = status.status().network().ip();
  ASSERT_FALSE(ip.empty());
  EXPECT_THAT(HttpGet(ip, 8080, 60), HasSubstr("served-from-the-pod-vm"));
  // The CRI port mapping, through the portmap plugin, on the node's loopback.
  EXPECT_THAT(HttpGet("127.0.0.1", host_port_, 30), HasSubstr("served-from-the-pod-vm"));
}

TEST_F(ContainerVmTest, RemovingThePodRemovesItsContainers) {
  std::string id = Run(Config("sleeper", {"sleep", "1000"}));
  v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod_);
  v1::StopPodSandboxResponse stopped;
  ASSERT_TRUE(cri_->runtime().StopPodSandbox(CriClient::Context(120).get(), stop, &stopped).ok());
  EXPECT_EQ(Status(id).state(), v1::CONTAINER_EXITED);
  v1::RemovePodSandboxRequest rm;
  rm.set_pod_sandbox_id(pod_);
  v1::RemovePodSandboxResponse removed;
  ASSERT_TRUE(cri_->runtime().RemovePodSandbox(CriClient::Context(120).get(), rm, &removed).ok());
  pod_.clear();
  v1::ListContainersResponse list;
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 0);
}

}  // namespace
}  // namespace podvisor::testing
