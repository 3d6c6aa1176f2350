/*
 * TEST SCAFFOLDING — wfp-driver-test.exe: plays synthetic flows into toktra-wfp.sys
 * through the WFP stand-in's device (\\.\FwpStandin) and reads the driver's events
 * back the way ToktraAgent.exe does, through DeviceIoControl on \\.\ToktraWfp.
 * Every check prints "ok NAME" or "FAIL NAME: why"; the exit code is the number of
 * failures. Run under Wine by scripts/test.d/65-driver.sh.
 *
 *   wfp-driver-test registrations          the stand-in's recorded state
 *   wfp-driver-test version                IOCTL_TOKTRA_GET_VERSION
 *   wfp-driver-test splits HELLO SNI ALPNS ClientHello split at every byte boundary
 *   wfp-driver-test connect                ALE connect: TCP, UDP + QUIC datagram, port 80
 *   wfp-driver-test quic                   UDP/443 flow: bounded QUIC datagram copies
 *   wfp-driver-test overflow               ring overflow: oldest dropped and counted
 *   wfp-driver-test leave-flows N          N flows left open (unload must end them)
 *   wfp-driver-test malformed              a stream indication longer than its chain
 *   wfp-driver-test feed HELLO N           N complete TLS flows, events left in the ring
 *                                          for another reader (ToktraAgent.exe end-to-end)
 *   wfp-driver-test expect-fed N SNI       what `feed` left: N connects, hellos, flow ends
 *   wfp-driver-test quic-flow ID FIRST|- DATAGRAM...
 *                                          one UDP/443 flow with real client Initials: ALE
 *                                          connect carrying FIRST (or no datagram), then
 *                                          each DATAGRAM outbound, one inbound, delete;
 *                                          events left in the ring for another reader
 *   wfp-driver-test expect-quic ID FIRST|- DATAGRAM...
 *                                          what `quic-flow` left: the copies byte-exact
 */
#include <windows.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include "standin-proto.h"

/* driver-abi's EventRecord, Counters and VersionInfo (windows/driver-abi/src/lib.rs). */
#pragma pack(push, 8)
typedef struct {
  uint16_t kind, flags; uint8_t ip_version, ip_protocol, r0[2];
  uint64_t sequence, flow_id, timestamp, started_at, process_id;
  uint8_t local_addr[16], remote_addr[16];
  uint16_t local_port, remote_port; uint32_t records_out, records_in;
  uint16_t payload_len, sni_len; uint64_t bytes_out, bytes_in, duration;
  uint16_t alpn_len, ja4_len, app_path_len, user_sid_len;
  uint8_t sni[256], alpn[128], ja4[48], user_sid[68], r1[4];
  uint16_t app_path[260]; uint8_t payload[1536];
} event_record;
typedef struct { uint64_t v[16]; } counters;
enum { C_WRITTEN, C_READ, C_DROPPED, C_RING_USED, C_RING_CAP, C_FLOWS_ACTIVE, C_FLOWS_TRACKED, C_FLOWS_CAP,
       C_ASSOC_FAIL, C_ALLOC_FAIL, C_HELLOS, C_NOT_TLS, C_TOO_LARGE, C_QUIC, C_CLASSIFY, C_MALFORMED };
typedef struct { uint32_t abi_version, event_record_size; uint16_t major, minor, patch, r; uint32_t ring_capacity, hello_cap; } version_info;
#pragma pack(pop)
_Static_assert(sizeof(event_record) == 2688, "EventRecord size (driver-abi)");
_Static_assert(offsetof(event_record, sni) == 128 && offsetof(event_record, app_path) == 632 && offsetof(event_record, payload) == 1152, "EventRecord offsets");
_Static_assert(offsetof(event_record, bytes_out) == 96 && offsetof(event_record, alpn_len) == 120, "EventRecord offsets");

#define TOKTRA_CTL(fn) ((0x8B70u << 16) | (1u << 14) | ((fn) << 2) | 0u)
#define IOCTL_READ_EVENTS TOKTRA_CTL(0x900)
#define IOCTL_GET_COUNTERS TOKTRA_CTL(0x901)
#define IOCTL_GET_VERSION TOKTRA_CTL(0x902)
enum { K_CONNECT = 1, K_HELLO = 2, K_QUIC = 3, K_FLOW_END = 4 };
#define F_HELLO_PARSED 2
#define F_PAYLOAD_TRUNCATED 16
#define ACTION_CONTINUE 0x2006
#define STREAM_SEND 0x10
#define STREAM_RECEIVE 0x1

static int failures;
static HANDLE standin, toktra;
static const wchar_t *APP = L"\\device\\harddiskvolume3\\program files\\testapp\\testapp.exe";
/* S-1-5-21-1-2-3-1001 */
static const uint8_t USER_SID[] = {1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0xe9, 3, 0, 0};

#define CHECK(name, cond, ...) do { if (cond) printf("ok %s\n", name); else { failures++; printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); } } while (0)

static HANDLE open_dev(const wchar_t *path) {
  HANDLE h = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
  if (h == INVALID_HANDLE_VALUE) { printf("FAIL open %ls: error %lu\n", path, GetLastError()); exit(100); }
  return h;
}

static struct standin_result play(struct standin_request *rq) {
  struct standin_result res;
  DWORD got = 0;
  memset(&res, 0, sizeof res);
  if (!DeviceIoControl(standin, IOCTL_STANDIN_CLASSIFY, rq, sizeof *rq + rq->data_len, &res, sizeof res, &got, NULL)) {
    printf("FAIL classify ioctl: error %lu\n", GetLastError());
    failures++;
  }
  return res;
}

static struct standin_request *req(uint32_t op, uint64_t flow, uint32_t proto, uint32_t rport, const void *data, uint32_t len) {
  struct standin_request *rq = calloc(1, sizeof *rq + len + 1);
  rq->op = op; rq->ip_version = 4; rq->flow_id = flow; rq->protocol = proto;
  rq->local_port = 50000 + (uint32_t)(flow % 10000); rq->remote_port = rport;
  rq->local_addr[0] = 10; rq->local_addr[3] = 2;
  rq->remote_addr[0] = 104; rq->remote_addr[1] = 18; rq->remote_addr[2] = 7; rq->remote_addr[3] = 192;
  rq->process_id = 4242;
  wcscpy((wchar_t *)rq->app_path, APP);
  memcpy(rq->user_sid, USER_SID, sizeof USER_SID); rq->user_sid_len = sizeof USER_SID;
  rq->data_len = len;
  if (len) memcpy(rq->data, data, len);
  return rq;
}

/* Classify and check that the callout said nothing but CONTINUE and left its rights. */
static int verdicts_bad;
static struct standin_result play_checked(struct standin_request *rq) {
  struct standin_result r = play(rq);
  if (r.classified && rq->op != STANDIN_FLOW_DELETE &&
      (r.action != ACTION_CONTINUE || r.rights != 1 || r.stream_action != 0 || r.bytes_required != 0)) {
    if (verdicts_bad++ < 3)
      printf("FAIL verdict: op %u action 0x%x rights %u stream_action %u bytes_required %u\n", rq->op, r.action, r.rights,
             r.stream_action, r.bytes_required);
    failures++;
  }
  free(rq);
  return r;
}

static int read_events(event_record *out, int max) {
  DWORD got = 0;
  if (!DeviceIoControl(toktra, IOCTL_READ_EVENTS, NULL, 0, out, (DWORD)(max * sizeof(event_record)), &got, NULL)) {
    printf("FAIL read events: error %lu\n", GetLastError());
    failures++;
    return 0;
  }
  return (int)(got / sizeof(event_record));
}

static int drain(event_record *out, int max) {
  int n = 0, k;
  while (n < max && (k = read_events(out + n, max - n > 64 ? 64 : max - n)) > 0) n += k;
  return n;
}

static counters get_counters(void) {
  counters c; DWORD got = 0;
  memset(&c, 0, sizeof c);
  if (!DeviceIoControl(toktra, IOCTL_GET_COUNTERS, NULL, 0, &c, sizeof c, &got, NULL) || got != sizeof c) {
    printf("FAIL counters ioctl: error %lu got %lu\n", GetLastError(), got);
    failures++;
  }
  return c;
}

static int same_identity(const event_record *e) {
  return e->process_id == 4242 && e->app_path_len == wcslen(APP) &&
         memcmp(e->app_path, APP, wcslen(APP) * 2) == 0 && e->user_sid_len == sizeof USER_SID &&
         memcmp(e->user_sid, USER_SID, sizeof USER_SID) == 0;
}

static int cmd_registrations(void) {
  static char buf[16384];
  DWORD got = 0;
  if (!DeviceIoControl(standin, IOCTL_STANDIN_DUMP, NULL, 0, buf, sizeof buf - 1, &got, NULL)) {
    printf("FAIL dump: error %lu\n", GetLastError());
    return 1;
  }
  buf[got] = 0;
  fputs(buf, stdout);
  return 0;
}

static int cmd_version(void) {
  version_info v; DWORD got = 0;
  memset(&v, 0, sizeof v);
  BOOL ok = DeviceIoControl(toktra, IOCTL_GET_VERSION, NULL, 0, &v, sizeof v, &got, NULL);
  CHECK("version-ioctl", ok && got == sizeof v, "error %lu got %lu", GetLastError(), got);
  printf("version abi=%u record=%u driver=%u.%u.%u ring=%u hello_cap=%u\n", v.abi_version, v.event_record_size, v.major,
         v.minor, v.patch, v.ring_capacity, v.hello_cap);
  CHECK("version-abi", v.abi_version == 1 && v.event_record_size == sizeof(event_record), "abi %u size %u", v.abi_version,
        v.event_record_size);
  /* A buffer too small for one record is refused, not half-filled. */
  event_record one; got = 0;
  ok = DeviceIoControl(toktra, IOCTL_READ_EVENTS, NULL, 0, &one, sizeof one - 1, &got, NULL);
  CHECK("read-events-needs-a-whole-record", !ok && got == 0, "ok %d got %lu", ok, got);
  return failures;
}

static uint8_t *read_file(const char *path, uint32_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) { printf("FAIL cannot open %s\n", path); exit(100); }
  uint8_t *b = malloc(1 << 16);
  *len = (uint32_t)fread(b, 1, 1 << 16, f);
  fclose(f);
  return b;
}

/* One TLS flow: established, outbound hello in two stream indications split at
 * `split` (each indication itself spread over two MDLs), three server records, delete. */
static void tls_flow(uint64_t flow, const uint8_t *hello, uint32_t len, uint32_t split, int v6) {
  struct standin_request *rq = req(STANDIN_FLOW_ESTABLISHED, flow, 6, 443, NULL, 0);
  if (v6) { rq->ip_version = 6; memset(rq->remote_addr, 0, 16); rq->remote_addr[0] = 0x26; rq->remote_addr[1] = 0x06; rq->remote_addr[15] = 1; }
  play_checked(rq);
  rq = req(STANDIN_STREAM, flow, 6, 443, hello, split);
  rq->ip_version = v6 ? 6 : 4; rq->stream_flags = STREAM_SEND; rq->mdl_split = split / 2;
  play_checked(rq);
  rq = req(STANDIN_STREAM, flow, 6, 443, hello + split, len - split);
  rq->ip_version = v6 ? 6 : 4; rq->stream_flags = STREAM_SEND; rq->mdl_split = (len - split) / 3;
  play_checked(rq);
  /* Server: a handshake record and three application-data records in one indication. */
  uint8_t in[5 + 40 + 3 * (5 + 100)];
  uint32_t n = 0;
  memcpy(in + n, "\x16\x03\x03\x00\x28", 5); n += 5; memset(in + n, 0xab, 40); n += 40;
  for (int i = 0; i < 3; i++) { memcpy(in + n, "\x17\x03\x03\x00\x64", 5); n += 5; memset(in + n, 0xcd, 100); n += 100; }
  rq = req(STANDIN_STREAM, flow, 6, 443, in, n);
  rq->ip_version = v6 ? 6 : 4; rq->stream_flags = STREAM_RECEIVE; rq->mdl_split = 47;
  play_checked(rq);
  play_checked(req(STANDIN_FLOW_DELETE, flow, 6, 443, NULL, 0));
}

static int alpn_matches(const event_record *e, const char *csv) {
  char want[256]; size_t w = 0;
  const char *p = csv;
  while (*p) {
    const char *c = strchr(p, ',');
    size_t l = c ? (size_t)(c - p) : strlen(p);
    want[w++] = (char)l; memcpy(want + w, p, l); w += l;
    p += l + (c ? 1 : 0);
  }
  return e->alpn_len == w && memcmp(e->alpn, want, w) == 0;
}

static int cmd_splits(const char *path, const char *sni, const char *alpns) {
  uint32_t len;
  uint8_t *hello = read_file(path, &len);
  event_record ev[8];
  int bad = 0, checked = 0;
  char first_ja4[49] = {0};
  counters before = get_counters();
  for (uint32_t split = 1; split < len; split++) {
    uint64_t flow = 100000 + split;
    tls_flow(flow, hello, len, split, split == len / 2);
    int n = drain(ev, 8);
    const event_record *h = NULL, *end = NULL;
    for (int i = 0; i < n; i++) {
      if (ev[i].kind == K_HELLO && ev[i].flow_id == flow) h = &ev[i];
      if (ev[i].kind == K_FLOW_END && ev[i].flow_id == flow) end = &ev[i];
    }
    int ok = n == 2 && h && end && (h->flags & F_HELLO_PARSED) && h->sni_len == strlen(sni) &&
             memcmp(h->sni, sni, h->sni_len) == 0 && alpn_matches(h, alpns) && h->ja4_len == 36 &&
             same_identity(h) && h->remote_port == 443 && h->ip_protocol == 6 &&
             h->ip_version == (split == len / 2 ? 6 : 4) && end->bytes_out == len &&
             end->bytes_in == 5 + 40 + 3 * 105 && end->records_in == 3 && end->records_out == 0 &&
             end->sni_len == h->sni_len && end->timestamp >= end->started_at && end->duration == end->timestamp - end->started_at;
    if (ok && !first_ja4[0]) memcpy(first_ja4, h->ja4, 36);
    if (ok && memcmp(first_ja4, h->ja4, 36) != 0) ok = 0;
    checked++;
    if (!ok && bad++ < 3) {
      printf("FAIL split %u: %d events", split, n);
      if (h) printf(" sni=%.*s ja4=%.*s flags=0x%x", h->sni_len, h->sni, h->ja4_len, h->ja4, h->flags);
      if (end) printf(" out=%llu in=%llu rin=%u", (unsigned long long)end->bytes_out, (unsigned long long)end->bytes_in, end->records_in);
      printf("\n");
    }
  }
  counters after = get_counters();
  printf("splits: %d checked, %d failed, hello %u bytes, ja4 %s\n", checked, bad, len, first_ja4);
  failures += bad;
  CHECK("splits-all-boundaries", bad == 0 && checked == (int)len - 1, "%d of %d failed", bad, checked);
  CHECK("splits-counters", after.v[C_HELLOS] - before.v[C_HELLOS] == len - 1 && after.v[C_FLOWS_ACTIVE] == 0 &&
        after.v[C_MALFORMED] == before.v[C_MALFORMED],
        "hellos +%llu active %llu", (unsigned long long)(after.v[C_HELLOS] - before.v[C_HELLOS]),
        (unsigned long long)after.v[C_FLOWS_ACTIVE]);
  CHECK("verdicts-continue-only", verdicts_bad == 0, "%d bad verdicts", verdicts_bad);
  /* Not TLS: counted, no hello event. */
  struct standin_request *rq;
  play_checked(req(STANDIN_FLOW_ESTABLISHED, 7, 6, 443, NULL, 0));
  rq = req(STANDIN_STREAM, 7, 6, 443, "GET / HTTP/1.1\r\n\r\n", 18); rq->stream_flags = STREAM_SEND;
  play_checked(rq);
  play_checked(req(STANDIN_FLOW_DELETE, 7, 6, 443, NULL, 0));
  int n = drain(ev, 8);
  CHECK("not-tls-flow", n == 1 && ev[0].kind == K_FLOW_END && (ev[0].flags & 4) && ev[0].sni_len == 0 && ev[0].bytes_out == 18,
        "%d events kind %u flags 0x%x", n, n ? ev[0].kind : 0, n ? ev[0].flags : 0);
  return failures;
}

static int cmd_connect(void) {
  event_record ev[8];
  drain(ev, 8);
  /* TCP to 443: one Connect event with who and where. */
  struct standin_result r = play_checked(req(STANDIN_ALE_CONNECT, 0, 6, 443, NULL, 0));
  int n = drain(ev, 8);
  CHECK("connect-tcp-443", r.classified && n == 1 && ev[0].kind == K_CONNECT && ev[0].flow_id == 0 && same_identity(&ev[0]) &&
        ev[0].remote_port == 443 && ev[0].ip_version == 4 && memcmp(ev[0].remote_addr, "\x68\x12\x07\xc0", 4) == 0,
        "classified %u events %d", r.classified, n);
  /* Port 80 does not match the filter: the callout is never invoked. */
  r = play_checked(req(STANDIN_ALE_CONNECT, 0, 6, 80, NULL, 0));
  n = drain(ev, 8);
  CHECK("connect-port-80-not-inspected", !r.classified && n == 0, "classified %u events %d", r.classified, n);
  /* UDP to 443 with a QUIC Initial as its first datagram. */
  uint8_t q[1250];
  for (int i = 0; i < (int)sizeof q; i++) q[i] = (uint8_t)i;
  q[0] = 0xc3;
  struct standin_request *rq = req(STANDIN_ALE_CONNECT, 0, 17, 443, q, sizeof q);
  rq->mdl_split = 600;
  r = play_checked(rq);
  n = drain(ev, 8);
  CHECK("connect-udp-first-datagram", r.classified && n == 2 && ev[0].kind == K_CONNECT && ev[1].kind == K_QUIC &&
        ev[1].payload_len == sizeof q && memcmp(ev[1].payload, q, sizeof q) == 0 && ev[1].ip_protocol == 17 && same_identity(&ev[1]),
        "classified %u events %d payload %u", r.classified, n, n > 1 ? ev[1].payload_len : 0);
  return failures;
}

static int cmd_quic(void) {
  event_record ev[16];
  uint8_t q[1400];
  drain(ev, 16);
  for (int i = 0; i < (int)sizeof q; i++) q[i] = (uint8_t)(i * 7);
  q[0] = 0xc0;
  play_checked(req(STANDIN_FLOW_ESTABLISHED, 9001, 17, 443, NULL, 0));
  for (int i = 0; i < 6; i++) {
    struct standin_request *rq = req(STANDIN_DATAGRAM, 9001, 17, 443, q, sizeof q);
    rq->mdl_split = 100 + i;
    play_checked(rq);
  }
  /* An inbound datagram is counted, not copied. */
  struct standin_request *rq = req(STANDIN_DATAGRAM, 9001, 17, 443, q, 300);
  rq->inbound = 1;
  play_checked(rq);
  play_checked(req(STANDIN_FLOW_DELETE, 9001, 17, 443, NULL, 0));
  int n = drain(ev, 16), quic = 0, good = 0;
  const event_record *end = NULL;
  for (int i = 0; i < n; i++) {
    if (ev[i].kind == K_QUIC) { quic++; good += ev[i].payload_len == sizeof q && memcmp(ev[i].payload, q, sizeof q) == 0 && ev[i].flow_id == 9001; }
    if (ev[i].kind == K_FLOW_END) end = &ev[i];
  }
  CHECK("quic-first-datagrams-bounded", quic == 4 && good == 4, "%d quic events, %d intact", quic, good);
  CHECK("quic-flow-end", end && end->bytes_out == 6 * sizeof q && end->bytes_in == 300 && end->ip_protocol == 17 && same_identity(end),
        "end %p out %llu in %llu", (void *)end, end ? (unsigned long long)end->bytes_out : 0ULL, end ? (unsigned long long)end->bytes_in : 0ULL);
  return failures;
}

static int cmd_overflow(void) {
  static event_record ev[1024];
  drain(ev, 1024);
  counters c0 = get_counters();
  uint32_t cap = (uint32_t)c0.v[C_RING_CAP];
  uint32_t extra = 88;
  for (uint32_t i = 0; i < cap + extra; i++) {
    struct standin_request *rq = req(STANDIN_ALE_CONNECT, 0, 6, 443, NULL, 0);
    rq->local_port = i; /* tells the events apart */
    play_checked(rq);
  }
  counters c1 = get_counters();
  int n = drain(ev, 1024);
  int in_order = 1;
  for (int i = 1; i < n; i++) in_order &= ev[i].sequence == ev[i - 1].sequence + 1 && ev[i].local_port == ev[i - 1].local_port + 1;
  CHECK("overflow-keeps-newest", n == (int)cap && ev[0].local_port == extra && ev[n - 1].local_port == cap + extra - 1 && in_order,
        "read %d (cap %u) first port %u last %u", n, cap, n ? ev[0].local_port : 0, n ? ev[n - 1].local_port : 0);
  CHECK("overflow-counted", c1.v[C_DROPPED] - c0.v[C_DROPPED] == extra && c1.v[C_RING_USED] == cap,
        "dropped +%llu used %llu", (unsigned long long)(c1.v[C_DROPPED] - c0.v[C_DROPPED]), (unsigned long long)c1.v[C_RING_USED]);
  counters c2 = get_counters();
  CHECK("overflow-drained", c2.v[C_RING_USED] == 0 && c2.v[C_READ] - c1.v[C_READ] == cap, "used %llu", (unsigned long long)c2.v[C_RING_USED]);
  return failures;
}

static int cmd_malformed(void) {
  event_record ev[8];
  drain(ev, 8);
  counters c0 = get_counters();
  play_checked(req(STANDIN_FLOW_ESTABLISHED, 4711, 6, 443, NULL, 0));
  struct standin_request *rq = req(STANDIN_STREAM, 4711, 6, 443, "\x16\x03\x01\x00\x05\x01\x00", 7);
  rq->stream_flags = STREAM_SEND;
  rq->declared_extra = 100000; /* the engine claims bytes the chain does not have */
  struct standin_result r = play_checked(rq);
  play_checked(req(STANDIN_FLOW_DELETE, 4711, 6, 443, NULL, 0));
  counters c1 = get_counters();
  int n = drain(ev, 8);
  CHECK("malformed-indication-counted", r.classified && r.action == ACTION_CONTINUE &&
        c1.v[C_MALFORMED] == c0.v[C_MALFORMED] + 1 && n == 1 && ev[0].kind == K_FLOW_END && ev[0].bytes_out == 7,
        "classified %u malformed +%llu events %d", r.classified, (unsigned long long)(c1.v[C_MALFORMED] - c0.v[C_MALFORMED]), n);
  return failures;
}

static int cmd_feed(const char *path, int count) {
  uint32_t len;
  uint8_t *hello = read_file(path, &len);
  for (int i = 0; i < count; i++) {
    play_checked(req(STANDIN_ALE_CONNECT, 0, 6, 443, NULL, 0));
    tls_flow(200000 + (uint64_t)i, hello, len, len / 2, 0);
  }
  printf("fed %d flows\n", count);
  return failures;
}

static int cmd_expect_fed(int count, const char *sni) {
  static event_record ev[1024];
  int n = drain(ev, 1024), connects = 0, hellos = 0, ends = 0;
  for (int i = 0; i < n; i++) {
    connects += ev[i].kind == K_CONNECT;
    hellos += ev[i].kind == K_HELLO && ev[i].sni_len == strlen(sni) && !memcmp(ev[i].sni, sni, ev[i].sni_len);
    ends += ev[i].kind == K_FLOW_END && ev[i].records_in == 3 && ev[i].sni_len == strlen(sni);
  }
  CHECK("fed-flows-waiting-in-the-ring", connects == count && hellos == count && ends == count && n == 3 * count,
        "%d events: %d connects, %d hellos, %d ends", n, connects, hellos, ends);
  return failures;
}

static int cmd_leave_flows(int n) {
  for (int i = 0; i < n; i++) play_checked(req(STANDIN_FLOW_ESTABLISHED, 70000 + i, i % 2 ? 17 : 6, 443, NULL, 0));
  counters c = get_counters();
  CHECK("flows-left-open", c.v[C_FLOWS_ACTIVE] == (uint64_t)n, "active %llu", (unsigned long long)c.v[C_FLOWS_ACTIVE]);
  return failures;
}

static uint32_t quic_local_port(uint64_t flow) { return 50000 + (uint32_t)(flow % 10000); }

static int cmd_quic_flow(uint64_t flow, const char *first, int n, char **files) {
  uint32_t len;
  struct standin_request *rq;
  if (strcmp(first, "-")) {
    uint8_t *d = read_file(first, &len);
    rq = req(STANDIN_ALE_CONNECT, 0, 17, 443, d, len);
    free(d);
  } else {
    rq = req(STANDIN_ALE_CONNECT, 0, 17, 443, NULL, 0);
  }
  rq->local_port = quic_local_port(flow); /* the connect's addresses are the flow's */
  play_checked(rq);
  play_checked(req(STANDIN_FLOW_ESTABLISHED, flow, 17, 443, NULL, 0));
  for (int i = 0; i < n; i++) {
    uint8_t *d = read_file(files[i], &len);
    rq = req(STANDIN_DATAGRAM, flow, 17, 443, d, len);
    rq->mdl_split = len / 3;
    play_checked(rq);
    free(d);
  }
  uint8_t in[1200];
  memset(in, 0x5a, sizeof in);
  rq = req(STANDIN_DATAGRAM, flow, 17, 443, in, sizeof in);
  rq->inbound = 1;
  play_checked(rq);
  play_checked(req(STANDIN_FLOW_DELETE, flow, 17, 443, NULL, 0));
  printf("fed quic flow %llu with %d datagram(s)%s\n", (unsigned long long)flow, n, strcmp(first, "-") ? " and one at connect" : "");
  return failures;
}

static int cmd_expect_quic(uint64_t flow, const char *first, int n, char **files) {
  static event_record ev[64];
  int got = drain(ev, 64), copies = 0, intact = 0, at_connect = 0;
  uint64_t sent = 0;
  const event_record *end = NULL;
  for (int i = 0; i < got; i++) {
    if (ev[i].kind == K_FLOW_END && ev[i].flow_id == flow) end = &ev[i];
    if (ev[i].kind != K_QUIC) continue;
    if (ev[i].flow_id == 0) {
      uint32_t len;
      uint8_t *d = strcmp(first, "-") ? read_file(first, &len) : NULL;
      at_connect += d && ev[i].payload_len == len && !memcmp(ev[i].payload, d, len) && ev[i].local_port == quic_local_port(flow);
      free(d);
      continue;
    }
    if (ev[i].flow_id != flow || copies >= n) continue;
    uint32_t len;
    uint8_t *d = read_file(files[copies], &len);
    intact += ev[i].payload_len == len && !memcmp(ev[i].payload, d, len) && !(ev[i].flags & F_PAYLOAD_TRUNCATED) && same_identity(&ev[i]);
    copies++;
    free(d);
  }
  for (int i = 0; i < n; i++) { uint32_t len; free(read_file(files[i], &len)); sent += len; }
  CHECK("quic-initials-copied-byte-exact", copies == n && intact == n && at_connect == (strcmp(first, "-") ? 1 : 0),
        "%d events: %d copies (%d intact) of %d, %d at connect", got, copies, intact, n, at_connect);
  CHECK("quic-flow-end", end && end->ip_protocol == 17 && end->bytes_out == sent && end->bytes_in == 1200 && same_identity(end),
        "end %p out %llu (want %llu)", (void *)end, end ? (unsigned long long)end->bytes_out : 0ULL, (unsigned long long)sent);
  return failures;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc < 2) { fprintf(stderr, "usage: see the header of driver-test.c\n"); return 100; }
  standin = open_dev(STANDIN_USER_PATH);
  if (!strcmp(argv[1], "registrations")) return cmd_registrations();
  toktra = open_dev(L"\\\\.\\ToktraWfp");
  if (!strcmp(argv[1], "version")) return cmd_version();
  if (!strcmp(argv[1], "splits") && argc == 5) return cmd_splits(argv[2], argv[3], argv[4]);
  if (!strcmp(argv[1], "connect")) return cmd_connect();
  if (!strcmp(argv[1], "quic")) return cmd_quic();
  if (!strcmp(argv[1], "overflow")) return cmd_overflow();
  if (!strcmp(argv[1], "malformed")) return cmd_malformed();
  if (!strcmp(argv[1], "expect-fed") && argc == 4) return cmd_expect_fed(atoi(argv[2]), argv[3]);
  if (!strcmp(argv[1], "feed") && argc == 4) return cmd_feed(argv[2], atoi(argv[3]));
  if (!strcmp(argv[1], "leave-flows") && argc == 3) return cmd_leave_flows(atoi(argv[2]));
  if (!strcmp(argv[1], "quic-flow") && argc >= 5) return cmd_quic_flow(strtoull(argv[2], NULL, 10), argv[3], argc - 4, argv + 4);
  if (!strcmp(argv[1], "expect-quic") && argc >= 5) return cmd_expect_quic(strtoull(argv[2], NULL, 10), argv[3], argc - 4, argv + 4);
  fprintf(stderr, "unknown command %s\n", argv[1]);
  return 100;
}
