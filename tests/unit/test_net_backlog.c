/* The listen backlog of src/net.c's listeners, read back from the kernel: a listening TCP socket's
 * backlog is what sock_diag reports in its write-queue field (idiag_wqueue = sk_max_ack_backlog, the field
 * `ss -ltn` shows as Send-Q), already capped at net.core.somaxconn as the kernel applies it. Reading the
 * value, rather than timing a burst of connect()s against it, does not depend on how busy the machine is. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "loop_fixture.h"
#include "net.h"

static uv_loop_t loop;

TestSuite(net_backlog, .timeout = 60);

/* A protocol that is never used: no client connects. */
static void *on_open(struct ps_net_conn *c, void *arg) { return NULL; }
static int on_read(void *state, const uint8_t *data, size_t len) { return 0; }
static void on_close(void *state) {}
static const struct ps_net_proto proto = {.on_open = on_open, .on_read = on_read, .on_close = on_close};

static bool closed;
static void done_cb(void *arg) { closed = true; }
static bool is_closed(void *arg) { return closed; }

/* The backlog of the IPv4 TCP socket listening on 127.0.0.1:port, as the kernel holds it; -1 if none. */
static int kernel_backlog(int port) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  cr_assert_geq(fd, 0, "netlink: %s", strerror(errno));
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } q = {
      .nlh = {.nlmsg_len = sizeof q,
              .nlmsg_type = SOCK_DIAG_BY_FAMILY,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
      .req = {.sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP, .idiag_states = 1u << TCP_LISTEN},
  };
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  cr_assert_eq(sendto(fd, &q, sizeof q, 0, (struct sockaddr *)&kernel, sizeof kernel), (ssize_t)sizeof q);
  int backlog = -1;
  static char buf[32768];
  /* A dump of this namespace's listening sockets, in messages until NLMSG_DONE (bounded: a machine has few).
   */
  for (int rounds = 0; rounds < 1000; rounds++) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    cr_assert_gt(n, 0, "netlink recv: %s", strerror(errno));
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      cr_assert_neq(h->nlmsg_type, NLMSG_ERROR, "sock_diag refused the dump");
      if (h->nlmsg_type == NLMSG_DONE) {
        close(fd);
        return backlog;
      }
      const struct inet_diag_msg *m = NLMSG_DATA(h);
      if (ntohs(m->id.idiag_sport) == port && m->id.idiag_src[0] == htonl(INADDR_LOOPBACK))
        backlog = (int)m->idiag_wqueue;
    }
  }
  cr_assert_fail("no end to the sock_diag dump");
  return -1;
}

static int somaxconn(void) {
  FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
  cr_assert_not_null(f);
  int v = 0;
  cr_assert_eq(fscanf(f, "%d", &v), 1);
  fclose(f);
  return v;
}

static int capped(int backlog) { return backlog < somaxconn() ? backlog : somaxconn(); }

Test(net_backlog, the_backlog_follows_the_slots_within_its_bounds) {
  cr_assert_eq(ps_net_backlog(1), PS_NET_BACKLOG);
  cr_assert_eq(ps_net_backlog(PS_NET_BACKLOG + 1), PS_NET_BACKLOG + 1);
  cr_assert_eq(ps_net_backlog(1000000), PS_NET_BACKLOG_MAX, "--max-conns' own maximum");
}

/* The listener's socket gets the backlog its slots want, raised after it listens (main.c sets the slots
 * once the listener is bound), and the kernel's cap applies. 2,000 slots is above PS_NET_BACKLOG and below
 * the default somaxconn (4096): the kernel's figure then differs from both the default and the cap. */
Test(net_backlog, the_listening_socket_gets_the_slots_backlog) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  struct ps_net_listener *l;
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &proto, NULL, &l), 0);
  int port = ps_net_listener_port(l);
  cr_assert_eq(kernel_backlog(port), capped(PS_NET_BACKLOG), "the default slots");
  cr_assert_eq(ps_net_listener_set_slots(l, 2000, NULL), 0);
  cr_assert_eq(kernel_backlog(port), capped(2000));
  if (somaxconn() <= PS_NET_BACKLOG)
    cr_log_warn("net.core.somaxconn %d: the raised backlog cannot show here", somaxconn());
  /* Fewer slots than the floor: the backlog goes back to it, not below. */
  cr_assert_eq(ps_net_listener_set_slots(l, 3, NULL), 0);
  cr_assert_eq(kernel_backlog(port), capped(PS_NET_BACKLOG));
  ps_net_listener_close(l, done_cb, NULL);
  cr_assert(ps_test_run_until(&loop, is_closed, NULL, 5000));
  PS_LOOP_END(&loop);
}
