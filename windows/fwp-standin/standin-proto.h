/* TEST SCAFFOLDING. The private protocol between the WFP stand-in (standin.c, built
 * as fwpkclnt.sys for Wine) and the test program (driver-test.c): how a test asks the
 * stand-in to play the filter engine and call the registered classify and
 * flow-delete functions with synthetic layer data. Nothing here ships. */
#pragma once
#include <stdint.h>

#define STANDIN_USER_PATH L"\\\\.\\FwpStandin"
#define STANDIN_DEVICE_TYPE 0x8B71u
#define STANDIN_CTL(fn) ((STANDIN_DEVICE_TYPE << 16) | (0u << 14) | ((fn) << 2) | 0u)
/* Output: the registration state as text (see standin.c, dump_state). */
#define IOCTL_STANDIN_DUMP STANDIN_CTL(0x900)
/* Input: struct standin_request + data; output: struct standin_result. */
#define IOCTL_STANDIN_CLASSIFY STANDIN_CTL(0x901)

enum standin_op {
  STANDIN_ALE_CONNECT = 1,     /* FWPS_LAYER_ALE_AUTH_CONNECT_V4/V6; data = first UDP datagram */
  STANDIN_FLOW_ESTABLISHED = 2,/* FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4/V6 */
  STANDIN_STREAM = 3,          /* FWPS_LAYER_STREAM_V4/V6, to the flow's context */
  STANDIN_DATAGRAM = 4,        /* FWPS_LAYER_DATAGRAM_DATA_V4/V6, to the flow's context */
  STANDIN_FLOW_DELETE = 5,     /* the flow ends: flowDeleteFn for each of its contexts */
};

#pragma pack(push, 8)
struct standin_request {
  uint32_t op;
  uint32_t ip_version;   /* 4 or 6 */
  uint64_t flow_id;
  uint32_t protocol;     /* 6 or 17 */
  uint32_t inbound;      /* direction of the connection / the datagram */
  uint32_t local_port, remote_port;
  uint8_t local_addr[16], remote_addr[16]; /* network order; IPv4 in the first 4 */
  uint64_t process_id;
  uint32_t stream_flags; /* FWPS_STREAM_FLAG_* */
  uint32_t mdl_split;    /* stream/datagram: put the bytes in two MDLs split here (0 = one) */
  uint16_t app_path[260];/* NUL-terminated; empty = no process path metadata */
  uint8_t user_sid[68];
  uint32_t user_sid_len; /* 0 = no ALE_USER_ID value */
  uint32_t declared_extra;/* stream: claim this many bytes more than the chain holds */
  uint32_t data_len;
  uint8_t data[];
};

struct standin_result {
  uint32_t classified;   /* a callout was invoked (filter matched / context present) */
  uint32_t action;       /* classifyOut.actionType after the call */
  uint32_t rights;       /* classifyOut.rights after the call */
  uint32_t stream_action;/* stream: ioPacket.streamAction after the call */
  uint32_t bytes_required;/* stream: ioPacket.countBytesRequired after the call */
  uint32_t contexts;     /* flow contexts the stand-in holds after the call */
};
#pragma pack(pop)
