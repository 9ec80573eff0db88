/*
 * netdelay QUEUE MS: holds every packet the kernel queues to NFQUEUE number QUEUE for MS milliseconds,
 * then lets it go. The host harness (harness.ts) runs it inside a host's namespace, with iptables rules
 * that queue what the host sends and receives on its link, to delay a link on a kernel built without
 * sch_netem (as this project's test machines are). The delay is the same for every packet, so packets
 * leave in the order they came: a FIFO of packet ids and due times. Only metadata is copied to user space.
 * Built by the harness with `gcc -O2 delay.c -lnetfilter_queue -lnfnetlink`; it exits when its namespace is removed
 * or on SIGTERM, and iptables' --queue-bypass lets packets through while it is not running.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define HELD_MAX (1 << 17)

static uint32_t held_id[HELD_MAX];
static int64_t held_due[HELD_MAX];
static unsigned head, count;
static int64_t delay_ns;
static struct nfq_q_handle *queue;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *data, void *unused) {
  (void)msg;
  (void)unused;
  struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
  if (header == NULL) return 0;
  uint32_t id = ntohl(header->packet_id);
  /* Full: let it go now rather than drop it (the loss rules, not this, decide what is lost). */
  if (count == HELD_MAX) return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
  unsigned slot = (head + count) % HELD_MAX;
  held_id[slot] = id;
  held_due[slot] = now_ns() + delay_ns;
  count++;
  return 0;
}

/* Lets every packet whose time has come go; returns the ms until the next one is due, or -1. */
static int release_due(void) {
  int64_t now = now_ns();
  while (count > 0 && held_due[head] <= now) {
    nfq_set_verdict(queue, held_id[head], NF_ACCEPT, 0, NULL);
    head = (head + 1) % HELD_MAX;
    count--;
  }
  if (count == 0) return -1;
  int64_t wait = (held_due[head] - now + 999999) / 1000000;
  return wait < 1 ? 1 : (int)wait;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: netdelay QUEUE MS\n");
    return 2;
  }
  int number = atoi(argv[1]);
  delay_ns = (int64_t)(atof(argv[2]) * 1e6);
  struct nfq_handle *handle = nfq_open();
  if (handle == NULL) {
    perror("netdelay: nfq_open");
    return 1;
  }
  queue = nfq_create_queue(handle, (uint16_t)number, on_packet, NULL);
  if (queue == NULL) {
    perror("netdelay: nfq_create_queue");
    return 1;
  }
  nfq_set_mode(queue, NFQNL_COPY_META, 0);
  nfq_set_queue_maxlen(queue, HELD_MAX);
  int fd = nfq_fd(handle);
  nfnl_rcvbufsiz(nfq_nfnlh(handle), 16 * 1024 * 1024);
  static char buffer[65536] __attribute__((aligned));
  for (;;) {
    struct pollfd wait = {.fd = fd, .events = POLLIN};
    int ready = poll(&wait, 1, release_due());
    if (ready < 0 && errno != EINTR) {
      perror("netdelay: poll");
      return 1;
    }
    if (ready > 0) {
      ssize_t length = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (length > 0) nfq_handle_packet(handle, buffer, (int)length);
      else if (length < 0 && errno == ENOBUFS) fprintf(stderr, "netdelay: queue %d overran; packets lost\n", number);
    }
    release_due();
  }
}
