#include "prom_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int ps_test_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

int ps_test_http_status(int port, const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
  if (write(fd, req, (size_t)n) != n) {
    close(fd);
    return -1;
  }
  char resp[64] = {0};
  ssize_t got = read(fd, resp, sizeof resp - 1);
  close(fd);
  int status = -1;
  if (got > 12 && sscanf(resp, "HTTP/%*d.%*d %d", &status) == 1) return status;
  return -1;
}

static void sleep_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int ps_test_prom_start(struct ps_test_prom *p, int port, char *why, size_t whylen) {
  if (access(PS_TEST_PROMETHEUS_BIN, X_OK) != 0) {
    snprintf(why, whylen, "%s is not installed (Debian package prometheus)", PS_TEST_PROMETHEUS_BIN);
    return -1;
  }
  if (port == 0) {
    snprintf(p->dir, sizeof p->dir, "/tmp/ps-test-prom-XXXXXX");
    if (mkdtemp(p->dir) == NULL) {
      snprintf(why, whylen, "mkdtemp: %s", strerror(errno));
      return -1;
    }
    port = ps_test_free_port();
  }
  p->port = port;
  snprintf(p->url, sizeof p->url, "%s://127.0.0.1:%d", p->web_config != NULL ? "https" : "http", port);
  char cfg[320], data[320], listen[64], log[320], web[340] = "";
  snprintf(cfg, sizeof cfg, "%s/prometheus.yml", p->dir);
  snprintf(data, sizeof data, "--storage.tsdb.path=%s/data", p->dir);
  snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", port);
  snprintf(log, sizeof log, "%s/prometheus.log", p->dir);
  FILE *f = fopen(cfg, "w");
  if (f == NULL) {
    snprintf(why, whylen, "%s: %s", cfg, strerror(errno));
    return -1;
  }
  fputs("global:\n  scrape_interval: 15s\nscrape_configs: []\n", f);
  fclose(f);
  char cfgflag[340];
  snprintf(cfgflag, sizeof cfgflag, "--config.file=%s", cfg);
  if (p->web_config != NULL) snprintf(web, sizeof web, "--web.config.file=%s", p->web_config);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(why, whylen, "fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    /* A test that crashes or is killed by criterion's timeout must not leave Prometheus running. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    char *argv[] = {"prometheus",
                    cfgflag,
                    data,
                    listen,
                    "--log.level=warn",
                    "--web.enable-lifecycle",
                    web[0] != '\0' ? web : NULL,
                    NULL};
    execv(PS_TEST_PROMETHEUS_BIN, argv);
    _exit(127);
  }
  p->pid = pid;
  /* Poll readiness; Prometheus answers /-/ready with 200 once its TSDB is open. */
  for (int waited = 0; waited < PS_TEST_PROM_READY_MS; waited += 100) {
    int status = p->ready_status != NULL ? p->ready_status(p) : ps_test_http_status(port, "/-/ready");
    if (status == 200) return 0;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      p->pid = 0;
      snprintf(why, whylen, "prometheus exited early; see %s", log);
      return -1;
    }
    sleep_ms(100);
  }
  snprintf(why, whylen, "prometheus not ready within %d ms; see %s", PS_TEST_PROM_READY_MS, log);
  ps_test_prom_stop(p, 0);
  return -1;
}

void ps_test_prom_stop(struct ps_test_prom *p, int keep_dir) {
  if (p->pid > 0) {
    kill(p->pid, SIGTERM);
    int st;
    waitpid(p->pid, &st, 0);
    p->pid = 0;
  }
  if (!keep_dir && p->dir[0] != '\0') {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", p->dir);
    p->dir[0] = '\0';
  }
}
