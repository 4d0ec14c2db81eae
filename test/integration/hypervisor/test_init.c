// A tiny /init for hypervisor tests (stands in for podvisor-agent): loads the modules listed in
// /lib/modules/load-order, opens the virtio-serial port named io.podvisor.agent.0 and writes
// "READY net=<interfaces> blk=<block devices>\n". Then it answers one command per line:
//   ping -> pong | net -> interfaces | blk -> block devices | poweroff | panic (init exits).
// Built static so that it needs nothing else in the initrd.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char kPortName[] = "io.podvisor.agent.0";

static void LoadModules(void) {
  FILE* f = fopen("/lib/modules/load-order", "r");
  if (f == NULL) return;
  char line[512];
  while (fgets(line, sizeof(line), f) != NULL) {
    line[strcspn(line, "\n")] = 0;
    int fd = open(line, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
      fprintf(stderr, "test-init: %s: %s\n", line, strerror(errno));
    }
    close(fd);
  }
  fclose(f);
}

// Writes the entries of `dir` (except dot files) separated by commas.
static void ListDir(const char* dir, char* out, size_t size) {
  out[0] = 0;
  DIR* d = opendir(dir);
  if (d == NULL) return;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (out[0] != 0) strncat(out, ",", size - strlen(out) - 1);
    strncat(out, e->d_name, size - strlen(out) - 1);
  }
  closedir(d);
}

static int OpenAgentPort(void) {
  for (int attempt = 0; attempt < 2000; ++attempt) {  // up to ~20 s
    DIR* d = opendir("/sys/class/virtio-ports");
    if (d != NULL) {
      struct dirent* e;
      while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], name[128] = {0};
        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
        int nfd = open(path, O_RDONLY);
        if (nfd < 0) continue;
        ssize_t n = read(nfd, name, sizeof(name) - 1);
        close(nfd);
        if (n > 0 && strncmp(name, kPortName, strlen(kPortName)) == 0) {
          snprintf(path, sizeof(path), "/dev/%s", e->d_name);
          closedir(d);
          int fd = open(path, O_RDWR);
          if (fd >= 0) return fd;
          fprintf(stderr, "test-init: open %s: %s\n", path, strerror(errno));
          return -1;
        }
      }
      closedir(d);
    }
    usleep(10000);
  }
  return -1;
}

static void Say(int fd, const char* text) {
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t n = write(fd, text, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text += n;
    len -= (size_t)n;
  }
}

int main(void) {
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  mount("proc", "/proc", "proc", 0, NULL);
  mount("sysfs", "/sys", "sysfs", 0, NULL);
  LoadModules();
  int fd = OpenAgentPort();
  if (fd < 0) {
    fprintf(stderr, "test-init: no %s port\n", kPortName);
    return 1;  // PID 1 exits: the kernel panics and (panic=-1, no reboot) QEMU ends
  }
  fprintf(stderr, "test-init: ready\n");
  char net[1024], blk[1024], msg[2200];
  ListDir("/sys/class/net", net, sizeof(net));
  ListDir("/sys/block", blk, sizeof(blk));
  snprintf(msg, sizeof(msg), "READY net=%s blk=%s\n", net, blk);
  Say(fd, msg);
  char line[256];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, line + used, sizeof(line) - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // host side not connected: wait and retry
      usleep(50000);
      continue;
    }
    used += (size_t)n;
    line[used] = 0;
    char* nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = 0;
      if (strcmp(line, "ping") == 0) {
        Say(fd, "pong\n");
      } else if (strcmp(line, "net") == 0) {
        ListDir("/sys/class/net", net, sizeof(net));
        snprintf(msg, sizeof(msg), "net=%s\n", net);
        Say(fd, msg);
      } else if (strcmp(line, "blk") == 0) {
        ListDir("/sys/block", blk, sizeof(blk));
        snprintf(msg, sizeof(msg), "blk=%s\n", blk);
        Say(fd, msg);
      } else if (strcmp(line, "poweroff") == 0) {
        sync();
        reboot(RB_POWER_OFF);
      } else if (strcmp(line, "panic") == 0) {
        return 2;
      }
      used -= (size_t)(nl + 1 - line);
      memmove(line, nl + 1, used + 1);
    }
    if (used == sizeof(line) - 1) used = 0;
  }
}
