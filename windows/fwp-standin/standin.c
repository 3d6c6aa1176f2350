/*
 * TEST SCAFFOLDING — a stand-in for fwpkclnt.sys (the Windows Filtering Platform
 * kernel client) so that toktra-wfp.sys loads and can be exercised under Wine, which
 * has no WFP. It is not a filter engine: it records what the driver registers
 * (engine sessions, provider, sublayer, callouts, filters, flow contexts) and, through
 * its own device \\.\FwpStandin, lets a test play the engine: call the registered
 * classify functions with synthetic incoming values, metadata (process id, path, user
 * SID, flow handle), stream data spread over NET_BUFFER/MDL chains and datagrams, and
 * call flow-delete. The registration state is also written to C:\fwp-standin-state.txt
 * after every change, so a test can check what is left after the driver unloaded.
 *
 * Structures the driver reads are laid out as in the WDK (fwpsk.h, fwpmtypes.h,
 * ndis.h); the driver's own compile-time assertions pin the same offsets.
 */
#include <ntddk.h>
#include <stdint.h>
#include "standin-proto.h"

/* ---- WFP shapes (as the driver sees them) ------------------------------------- */

typedef struct { UINT32 type; UINT64 value; } FWP_VALUE0;
typedef struct { UINT32 size; UINT8 *data; } FWP_BYTE_BLOB;
typedef struct { const WCHAR *name, *description; } FWPM_DISPLAY_DATA0;
typedef struct { FWP_VALUE0 value; } FWPS_INCOMING_VALUE0;
typedef struct { UINT16 layerId; UINT32 valueCount; FWPS_INCOMING_VALUE0 *incomingValue; } FWPS_INCOMING_VALUES0;
typedef struct {
  UINT32 currentMetadataValues, flags; UINT64 reserved;
  UINT32 discardModule, discardReason; UINT64 discardFilterId;
  UINT64 flowHandle; UINT32 ipHeaderSize, transportHeaderSize;
  FWP_BYTE_BLOB *processPath; UINT64 token; UINT64 processId;
  UINT8 rest[512]; /* the engine's structure is larger; zero past processId */
} FWPS_INCOMING_METADATA_VALUES0;
typedef struct { UINT32 actionType; UINT64 outContext, filterId; UINT32 rights, flags, reserved; } FWPS_CLASSIFY_OUT0;
typedef void (NTAPI *CLASSIFY_FN)(const FWPS_INCOMING_VALUES0 *, const FWPS_INCOMING_METADATA_VALUES0 *,
                                  void *, const void *, const void *, UINT64, FWPS_CLASSIFY_OUT0 *);
typedef NTSTATUS (NTAPI *NOTIFY_FN)(UINT32, const GUID *, void *);
typedef void (NTAPI *FLOW_DELETE_FN)(UINT16, UINT32, UINT64);
typedef struct { GUID calloutKey; UINT32 flags; CLASSIFY_FN classifyFn; NOTIFY_FN notifyFn; FLOW_DELETE_FN flowDeleteFn; } FWPS_CALLOUT1;
typedef struct { GUID sessionKey; FWPM_DISPLAY_DATA0 displayData; UINT32 flags, txnWaitTimeoutInMSec, processId; void *sid; WCHAR *username; INT32 kernelMode; } FWPM_SESSION0;
typedef struct { GUID providerKey; FWPM_DISPLAY_DATA0 displayData; UINT32 flags; FWP_BYTE_BLOB providerData; WCHAR *serviceName; } FWPM_PROVIDER0;
typedef struct { GUID subLayerKey; FWPM_DISPLAY_DATA0 displayData; UINT16 flags; GUID *providerKey; FWP_BYTE_BLOB providerData; UINT16 weight; } FWPM_SUBLAYER0;
typedef struct { GUID calloutKey; FWPM_DISPLAY_DATA0 displayData; UINT32 flags; GUID *providerKey; FWP_BYTE_BLOB providerData; GUID applicableLayer; UINT32 calloutId; } FWPM_CALLOUT0;
typedef struct { UINT32 type; GUID calloutKey; } FWPM_ACTION0;
typedef struct { GUID fieldKey; UINT32 matchType; FWP_VALUE0 conditionValue; } FWPM_FILTER_CONDITION0;
typedef struct {
  GUID filterKey; FWPM_DISPLAY_DATA0 displayData; UINT32 flags; GUID *providerKey; FWP_BYTE_BLOB providerData;
  GUID layerKey, subLayerKey; FWP_VALUE0 weight; UINT32 numFilterConditions; FWPM_FILTER_CONDITION0 *filterCondition;
  FWPM_ACTION0 action; UINT64 providerContext[2]; GUID *reserved; UINT64 filterId; FWP_VALUE0 effectiveWeight;
} FWPM_FILTER0;
_Static_assert(sizeof(FWPM_FILTER0) == 200, "FWPM_FILTER0");
_Static_assert(sizeof(FWPS_CALLOUT1) == 48, "FWPS_CALLOUT1");
_Static_assert(sizeof(FWPS_CLASSIFY_OUT0) == 40, "FWPS_CLASSIFY_OUT0");

/* ndis.h NET_BUFFER_LIST / NET_BUFFER (mingw's ndis.h lacks the NDIS 6 types). */
typedef struct SI_NB { struct SI_NB *Next; MDL *CurrentMdl; ULONG CurrentMdlOffset; SIZE_T DataLength; MDL *MdlChain; ULONG DataOffset; } __attribute__((aligned(16))) SI_NET_BUFFER;
typedef struct SI_NBL { struct SI_NBL *Next; SI_NET_BUFFER *FirstNetBuffer; } __attribute__((aligned(16))) SI_NET_BUFFER_LIST;
typedef struct { SI_NET_BUFFER_LIST *netBufferList; SI_NET_BUFFER *netBuffer; MDL *mdl; UINT32 mdlOffset, netBufferOffset; SIZE_T streamDataOffset; } FWPS_STREAM_DATA_OFFSET0;
typedef struct { UINT32 flags; FWPS_STREAM_DATA_OFFSET0 dataOffset; SIZE_T dataLength; SI_NET_BUFFER_LIST *netBufferListChain; } FWPS_STREAM_DATA0;
typedef struct { FWPS_STREAM_DATA0 *streamData; SIZE_T missedBytes; UINT32 countBytesRequired; SIZE_T countBytesEnforced; UINT32 streamAction; } FWPS_STREAM_CALLOUT_IO_PACKET0;
_Static_assert(sizeof(FWPS_STREAM_DATA0) == 64, "FWPS_STREAM_DATA0");

/* winnt.h TOKEN_ACCESS_INFORMATION prefix: SidHash -> SID_AND_ATTRIBUTES_HASH. */
typedef struct { void *Sid; ULONG Attributes; } SI_SID_AND_ATTRIBUTES;
typedef struct { ULONG SidCount; SI_SID_AND_ATTRIBUTES *SidAttr; UINT64 Hash[32]; } SI_SID_HASH;
typedef struct { SI_SID_HASH *SidHash; void *rest[12]; } SI_TOKEN_ACCESS_INFORMATION;

#define TAG 0x46775354u /* "TSwF" */
#define FWP_UINT8 1
#define FWP_UINT16 2
#define FWP_UINT32 3
#define FWP_BYTE_ARRAY16_TYPE 11
#define FWP_TOKEN_ACCESS_INFORMATION_TYPE 16
#define FWPS_RIGHT_ACTION_WRITE 1
#define FWPS_METADATA_FIELD_FLOW_HANDLE 0x2
#define FWPS_METADATA_FIELD_PROCESS_PATH 0x8
#define FWPS_METADATA_FIELD_PROCESS_ID 0x20
#define FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE 0x400
#define FWP_CALLOUT_FLAG_CONDITIONAL_ON_FLOW 1

/* Layer GUIDs and run-time ids the stand-in can play. */
static const struct layer_info { GUID key; UINT16 v4_id, v6_id; const char *name; } LAYERS[] = {
  {{0xc38d57d1, 0x05a7, 0x4c33, {0x90, 0x4f, 0x7f, 0xbc, 0xee, 0xe6, 0x0e, 0x82}}, 48, 0, "ALE_AUTH_CONNECT_V4"},
  {{0x4a72393b, 0x319f, 0x44bc, {0x84, 0xc3, 0xba, 0x54, 0xdc, 0xb3, 0xb6, 0xb4}}, 50, 0, "ALE_AUTH_CONNECT_V6"},
  {{0xaf80470a, 0x5596, 0x4c13, {0x99, 0x92, 0x53, 0x9e, 0x6f, 0xe5, 0x79, 0x67}}, 52, 0, "ALE_FLOW_ESTABLISHED_V4"},
  {{0x7021d2b3, 0xdfa4, 0x406e, {0xaf, 0xeb, 0x6a, 0xfa, 0xf7, 0xe7, 0x0e, 0xfd}}, 54, 0, "ALE_FLOW_ESTABLISHED_V6"},
  {{0x3b89653c, 0xc170, 0x49e4, {0xb1, 0xcd, 0xe0, 0xee, 0xee, 0xe1, 0x9a, 0x3e}}, 20, 0, "STREAM_V4"},
  {{0x47c9137a, 0x7ec4, 0x46b3, {0xb6, 0xe4, 0x48, 0xe9, 0x26, 0xb1, 0xed, 0xa4}}, 22, 0, "STREAM_V6"},
  {{0x3d08bf4e, 0x45f6, 0x4930, {0xa9, 0x22, 0x41, 0x70, 0x98, 0xe2, 0x00, 0x27}}, 24, 0, "DATAGRAM_DATA_V4"},
  {{0xfa45fe2f, 0x3cba, 0x4427, {0x87, 0xfc, 0x57, 0xb9, 0xa4, 0xb1, 0x0d, 0x00}}, 26, 0, "DATAGRAM_DATA_V6"},
};
#define NLAYERS (sizeof(LAYERS) / sizeof(LAYERS[0]))
static const GUID COND_REMOTE_PORT = {0xc35a604d, 0xd22b, 0x4e1a, {0x91, 0xb4, 0x68, 0xf6, 0x74, 0xee, 0x67, 0x4b}};
static const GUID COND_PROTOCOL = {0x3971ef2b, 0x623e, 0x4f9a, {0x8c, 0xb1, 0x6e, 0x79, 0xb8, 0x06, 0xb9, 0xa7}};

/* ---- recorded state ------------------------------------------------------------ */

#define MAXN 32
static struct { int used; GUID key; UINT32 flags; CLASSIFY_FN classify; FLOW_DELETE_FN flow_delete; UINT32 id; } g_reg[MAXN];
static struct { int used; GUID key; } g_providers[MAXN], g_sublayers[MAXN];
static struct { int used; GUID key, layer; UINT32 id; } g_callouts[MAXN];
static struct { int used; UINT64 id; GUID layer, sublayer, callout; UINT32 action, nconds; GUID cond_key; UINT32 cond_type; UINT64 cond_value; } g_filters[MAXN];
#define MAXCTX 4096
static struct { int used; UINT64 flow; UINT16 layer; UINT32 callout; UINT64 ctx; } g_ctx[MAXCTX];
static int g_engines_open, g_engines_dynamic, g_in_txn;
static UINT32 g_next_id = 100;
static UINT64 g_next_filter = 1000;
static int g_device_made;
static PDRIVER_OBJECT g_driver;
static PDEVICE_OBJECT g_device;
static ULONG g_leaked_at_close; /* objects a closing session still held */

static int guid_eq(const GUID *a, const GUID *b) { return RtlCompareMemory(a, b, sizeof(GUID)) == sizeof(GUID); }

/* ---- a tiny text writer (no CRT in a kernel image) ------------------------------ */

static char g_text[16384];
static ULONG g_len;
static void put(const char *s) { while (*s && g_len < sizeof(g_text) - 1) g_text[g_len++] = *s++; }
static void put_hex(UINT64 v, int digits) {
  static const char h[] = "0123456789abcdef";
  char b[17]; int i;
  for (i = digits - 1; i >= 0; i--) { b[i] = h[v & 15]; v >>= 4; }
  b[digits] = 0; put(b);
}
static void put_dec(UINT64 v) {
  char b[24]; int i = 23; b[i] = 0;
  do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  put(b + i);
}
static void put_guid(const GUID *g) {
  put("{"); put_hex(g->Data1, 8); put("-"); put_hex(g->Data2, 4); put("-"); put_hex(g->Data3, 4); put("-");
  put_hex(g->Data4[0], 2); put_hex(g->Data4[1], 2); put("-");
  for (int i = 2; i < 8; i++) put_hex(g->Data4[i], 2);
  put("}");
}
static const char *layer_name(const GUID *g) {
  for (unsigned i = 0; i < NLAYERS; i++) if (guid_eq(&LAYERS[i].key, g)) return LAYERS[i].name;
  return "UNKNOWN_LAYER";
}

/* One line per object; the tests parse it. */
static void dump_state(void) {
  int i;
  g_len = 0;
  put("engines_open "); put_dec(g_engines_open); put("\n");
  put("leaked_at_close "); put_dec(g_leaked_at_close); put("\n");
  for (i = 0; i < MAXN; i++) if (g_providers[i].used) { put("provider "); put_guid(&g_providers[i].key); put("\n"); }
  for (i = 0; i < MAXN; i++) if (g_sublayers[i].used) { put("sublayer "); put_guid(&g_sublayers[i].key); put("\n"); }
  for (i = 0; i < MAXN; i++) if (g_reg[i].used) {
    put("registered "); put_dec(g_reg[i].id); put(" "); put_guid(&g_reg[i].key);
    put(g_reg[i].flags & FWP_CALLOUT_FLAG_CONDITIONAL_ON_FLOW ? " conditional_on_flow" : " any_flow");
    put(g_reg[i].flow_delete ? " flow_delete\n" : " no_flow_delete\n");
  }
  for (i = 0; i < MAXN; i++) if (g_callouts[i].used) {
    put("callout "); put_guid(&g_callouts[i].key); put(" "); put(layer_name(&g_callouts[i].layer)); put("\n");
  }
  for (i = 0; i < MAXN; i++) if (g_filters[i].used) {
    put("filter "); put_dec(g_filters[i].id); put(" "); put(layer_name(&g_filters[i].layer));
    put(" action=0x"); put_hex(g_filters[i].action, 4); put(" callout="); put_guid(&g_filters[i].callout);
    put(" sublayer="); put_guid(&g_filters[i].sublayer);
    put(" conditions="); put_dec(g_filters[i].nconds);
    if (g_filters[i].nconds) {
      put(guid_eq(&g_filters[i].cond_key, &COND_REMOTE_PORT) ? " remote_port=" : " other=");
      put_dec(g_filters[i].cond_value);
    }
    put("\n");
  }
  int n = 0;
  for (i = 0; i < MAXCTX; i++) if (g_ctx[i].used) n++;
  put("contexts "); put_dec(n); put("\n");
}

static void save_state(void) {
  UNICODE_STRING name;
  OBJECT_ATTRIBUTES oa;
  IO_STATUS_BLOCK iosb;
  HANDLE h;
  dump_state();
  RtlInitUnicodeString(&name, L"\\??\\C:\\fwp-standin-state.txt");
  InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE, NULL, NULL);
  if (NT_SUCCESS(ZwCreateFile(&h, GENERIC_WRITE | SYNCHRONIZE, &oa, &iosb, NULL, FILE_ATTRIBUTE_NORMAL, 0,
                              FILE_OVERWRITE_IF, FILE_SYNCHRONOUS_IO_NONALERT | FILE_NON_DIRECTORY_FILE, NULL, 0))) {
    ZwWriteFile(h, NULL, NULL, NULL, &iosb, g_text, g_len, NULL, NULL);
    ZwClose(h);
  }
}

/* ---- the stand-in's own device -------------------------------------------------- */

static NTSTATUS NTAPI dispatch_ok(PDEVICE_OBJECT dev, PIRP irp) {
  (void)dev;
  irp->IoStatus.Status = STATUS_SUCCESS;
  irp->IoStatus.Information = 0;
  IofCompleteRequest(irp, IO_NO_INCREMENT);
  return STATUS_SUCCESS;
}

static NTSTATUS play(const struct standin_request *rq, ULONG rq_len, struct standin_result *res);

static NTSTATUS NTAPI dispatch_ioctl(PDEVICE_OBJECT dev, PIRP irp) {
  PIO_STACK_LOCATION io = IoGetCurrentIrpStackLocation(irp);
  ULONG code = io->Parameters.DeviceIoControl.IoControlCode;
  ULONG in_len = io->Parameters.DeviceIoControl.InputBufferLength;
  ULONG out_len = io->Parameters.DeviceIoControl.OutputBufferLength;
  void *buf = irp->AssociatedIrp.SystemBuffer;
  NTSTATUS status = STATUS_INVALID_DEVICE_REQUEST;
  ULONG_PTR info = 0;
  (void)dev;
  if (code == IOCTL_STANDIN_DUMP) {
    dump_state();
    if (out_len < g_len) status = STATUS_BUFFER_TOO_SMALL;
    else { RtlCopyMemory(buf, g_text, g_len); info = g_len; status = STATUS_SUCCESS; }
  } else if (code == IOCTL_STANDIN_CLASSIFY) {
    if (in_len < sizeof(struct standin_request) || out_len < sizeof(struct standin_result)) {
      status = STATUS_BUFFER_TOO_SMALL;
    } else {
      /* METHOD_BUFFERED: input and output share the buffer; keep a copy of the input. */
      struct standin_request *rq = ExAllocatePoolWithTag(NonPagedPool, in_len, TAG);
      struct standin_result res;
      RtlZeroMemory(&res, sizeof res);
      if (!rq) status = STATUS_INSUFFICIENT_RESOURCES;
      else {
        RtlCopyMemory(rq, buf, in_len);
        status = play(rq, in_len, &res);
        ExFreePoolWithTag(rq, TAG);
        RtlCopyMemory(buf, &res, sizeof res);
        info = sizeof res;
      }
    }
  }
  irp->IoStatus.Status = status;
  irp->IoStatus.Information = info;
  IofCompleteRequest(irp, IO_NO_INCREMENT);
  return status;
}

NTSTATUS NTAPI IoCreateDriver(PUNICODE_STRING name, PDRIVER_INITIALIZE init);
void NTAPI IoDeleteDriver(PDRIVER_OBJECT drv);

static NTSTATUS NTAPI standin_driver_init(PDRIVER_OBJECT drv, PUNICODE_STRING path) {
  UNICODE_STRING name, link;
  PDEVICE_OBJECT dev;
  NTSTATUS status;
  (void)path;
  RtlInitUnicodeString(&name, L"\\Device\\FwpStandin");
  RtlInitUnicodeString(&link, L"\\DosDevices\\FwpStandin");
  status = IoCreateDevice(drv, 0, &name, STANDIN_DEVICE_TYPE, 0, FALSE, &dev);
  if (!NT_SUCCESS(status)) return status;
  g_driver = drv;
  g_device = dev;
  status = IoCreateSymbolicLink(&link, &name);
  drv->MajorFunction[IRP_MJ_CREATE] = dispatch_ok;
  drv->MajorFunction[IRP_MJ_CLOSE] = dispatch_ok;
  drv->MajorFunction[IRP_MJ_DEVICE_CONTROL] = dispatch_ioctl;
  return status;
}

/* When the last engine handle closes (the driver unloaded), the device goes too: the
 * image of this stand-in is unloaded with the driver, and a device left behind would
 * point at freed code; the next load creates it again. */
static void drop_device(void) {
  UNICODE_STRING link;
  if (!g_device_made) return;
  RtlInitUnicodeString(&link, L"\\DosDevices\\FwpStandin");
  IoDeleteSymbolicLink(&link);
  if (g_device) IoDeleteDevice(g_device);
  if (g_driver) IoDeleteDriver(g_driver);
  g_device = NULL;
  g_driver = NULL;
  g_device_made = 0;
}

static void ensure_device(void) {
  UNICODE_STRING drv;
  if (g_device_made) return;
  g_device_made = 1;
  RtlInitUnicodeString(&drv, L"\\Driver\\FwpStandin");
  IoCreateDriver(&drv, standin_driver_init);
}

BOOLEAN WINAPI DllEntry(void *inst, ULONG reason, void *reserved) {
  (void)inst; (void)reason; (void)reserved;
  return TRUE;
}

/* ---- fwpmk.h / fwpsk.h ---------------------------------------------------------- */

__declspec(dllexport) NTSTATUS NTAPI FwpmEngineOpen0(const WCHAR *server, UINT32 authn, void *ident,
                                                     const FWPM_SESSION0 *session, HANDLE *engine) {
  (void)server; (void)authn; (void)ident;
  ensure_device();
  g_engines_open++;
  if (session && (session->flags & 1)) g_engines_dynamic++;
  *engine = (HANDLE)(ULONG_PTR)(0x5000 + g_engines_open);
  save_state();
  return STATUS_SUCCESS;
}

static ULONG count_objects(void) {
  ULONG n = 0;
  for (int i = 0; i < MAXN; i++) n += g_providers[i].used + g_sublayers[i].used + g_callouts[i].used + g_filters[i].used;
  return n;
}

__declspec(dllexport) NTSTATUS NTAPI FwpmEngineClose0(HANDLE engine) {
  (void)engine;
  if (g_engines_open <= 0) return STATUS_INVALID_PARAMETER;
  g_engines_open--;
  /* A dynamic session takes its objects with it; remember how many it still held so a
   * test can tell "deleted by the driver" from "swept by the session". */
  g_leaked_at_close += count_objects();
  if (g_engines_dynamic > 0) {
    g_engines_dynamic--;
    RtlZeroMemory(g_providers, sizeof g_providers);
    RtlZeroMemory(g_sublayers, sizeof g_sublayers);
    RtlZeroMemory(g_callouts, sizeof g_callouts);
    RtlZeroMemory(g_filters, sizeof g_filters);
  }
  save_state();
  if (g_engines_open == 0) {
    int registered = 0;
    for (int i = 0; i < MAXN; i++) registered += g_reg[i].used;
    if (!registered) drop_device();
  }
  return STATUS_SUCCESS;
}

__declspec(dllexport) NTSTATUS NTAPI FwpmTransactionBegin0(HANDLE e, UINT32 f) { (void)e; (void)f; g_in_txn = 1; return STATUS_SUCCESS; }
__declspec(dllexport) NTSTATUS NTAPI FwpmTransactionCommit0(HANDLE e) { (void)e; g_in_txn = 0; save_state(); return STATUS_SUCCESS; }
__declspec(dllexport) NTSTATUS NTAPI FwpmTransactionAbort0(HANDLE e) {
  (void)e; g_in_txn = 0;
  /* The stand-in does not roll back; an aborted registration shows as leftovers. */
  save_state();
  return STATUS_SUCCESS;
}

__declspec(dllexport) NTSTATUS NTAPI FwpmProviderAdd0(HANDLE e, const FWPM_PROVIDER0 *p, void *sd) {
  (void)e; (void)sd;
  for (int i = 0; i < MAXN; i++) if (g_providers[i].used && guid_eq(&g_providers[i].key, &p->providerKey)) return STATUS_FWP_ALREADY_EXISTS;
  for (int i = 0; i < MAXN; i++) if (!g_providers[i].used) { g_providers[i].used = 1; g_providers[i].key = p->providerKey; return STATUS_SUCCESS; }
  return STATUS_INSUFFICIENT_RESOURCES;
}
__declspec(dllexport) NTSTATUS NTAPI FwpmProviderDeleteByKey0(HANDLE e, const GUID *k) {
  (void)e;
  for (int i = 0; i < MAXN; i++) if (g_providers[i].used && guid_eq(&g_providers[i].key, k)) { g_providers[i].used = 0; save_state(); return STATUS_SUCCESS; }
  return STATUS_FWP_NOT_FOUND;
}
__declspec(dllexport) NTSTATUS NTAPI FwpmSubLayerAdd0(HANDLE e, const FWPM_SUBLAYER0 *s, void *sd) {
  (void)e; (void)sd;
  for (int i = 0; i < MAXN; i++) if (!g_sublayers[i].used) { g_sublayers[i].used = 1; g_sublayers[i].key = s->subLayerKey; return STATUS_SUCCESS; }
  return STATUS_INSUFFICIENT_RESOURCES;
}
__declspec(dllexport) NTSTATUS NTAPI FwpmSubLayerDeleteByKey0(HANDLE e, const GUID *k) {
  (void)e;
  for (int i = 0; i < MAXN; i++) if (g_sublayers[i].used && guid_eq(&g_sublayers[i].key, k)) { g_sublayers[i].used = 0; save_state(); return STATUS_SUCCESS; }
  return STATUS_FWP_NOT_FOUND;
}
__declspec(dllexport) NTSTATUS NTAPI FwpmCalloutAdd0(HANDLE e, const FWPM_CALLOUT0 *c, void *sd, UINT32 *id) {
  (void)e; (void)sd;
  for (int i = 0; i < MAXN; i++) if (!g_callouts[i].used) {
    g_callouts[i].used = 1; g_callouts[i].key = c->calloutKey; g_callouts[i].layer = c->applicableLayer;
    g_callouts[i].id = g_next_id++;
    if (id) *id = g_callouts[i].id;
    return STATUS_SUCCESS;
  }
  return STATUS_INSUFFICIENT_RESOURCES;
}
__declspec(dllexport) NTSTATUS NTAPI FwpmCalloutDeleteById0(HANDLE e, UINT32 id) {
  (void)e;
  for (int i = 0; i < MAXN; i++) if (g_callouts[i].used && g_callouts[i].id == id) { g_callouts[i].used = 0; save_state(); return STATUS_SUCCESS; }
  return STATUS_FWP_NOT_FOUND;
}
__declspec(dllexport) NTSTATUS NTAPI FwpmFilterAdd0(HANDLE e, const FWPM_FILTER0 *f, void *sd, UINT64 *id) {
  (void)e; (void)sd;
  for (int i = 0; i < MAXN; i++) if (!g_filters[i].used) {
    g_filters[i].used = 1; g_filters[i].id = g_next_filter++;
    g_filters[i].layer = f->layerKey; g_filters[i].sublayer = f->subLayerKey;
    g_filters[i].action = f->action.type; g_filters[i].callout = f->action.calloutKey;
    g_filters[i].nconds = f->numFilterConditions;
    if (f->numFilterConditions && f->filterCondition) {
      g_filters[i].cond_key = f->filterCondition[0].fieldKey;
      g_filters[i].cond_type = f->filterCondition[0].conditionValue.type;
      g_filters[i].cond_value = f->filterCondition[0].conditionValue.value & 0xffff;
    }
    if (id) *id = g_filters[i].id;
    return STATUS_SUCCESS;
  }
  return STATUS_INSUFFICIENT_RESOURCES;
}
__declspec(dllexport) NTSTATUS NTAPI FwpmFilterDeleteById0(HANDLE e, UINT64 id) {
  (void)e;
  for (int i = 0; i < MAXN; i++) if (g_filters[i].used && g_filters[i].id == id) { g_filters[i].used = 0; save_state(); return STATUS_SUCCESS; }
  return STATUS_FWP_NOT_FOUND;
}

__declspec(dllexport) NTSTATUS NTAPI FwpsCalloutRegister1(void *device, const FWPS_CALLOUT1 *c, UINT32 *id) {
  (void)device;
  ensure_device();
  for (int i = 0; i < MAXN; i++) if (!g_reg[i].used) {
    g_reg[i].used = 1; g_reg[i].key = c->calloutKey; g_reg[i].flags = c->flags;
    g_reg[i].classify = c->classifyFn; g_reg[i].flow_delete = c->flowDeleteFn; g_reg[i].id = g_next_id++;
    if (id) *id = g_reg[i].id;
    save_state();
    return STATUS_SUCCESS;
  }
  return STATUS_INSUFFICIENT_RESOURCES;
}
__declspec(dllexport) NTSTATUS NTAPI FwpsCalloutUnregisterById0(UINT32 id) {
  for (int i = 0; i < MAXCTX; i++) if (g_ctx[i].used && g_ctx[i].callout == id) return STATUS_DEVICE_BUSY;
  for (int i = 0; i < MAXN; i++) if (g_reg[i].used && g_reg[i].id == id) { g_reg[i].used = 0; save_state(); return STATUS_SUCCESS; }
  return STATUS_FWP_NOT_FOUND;
}
__declspec(dllexport) NTSTATUS NTAPI FwpsFlowAssociateContext0(UINT64 flow, UINT16 layer, UINT32 callout, UINT64 ctx) {
  for (int i = 0; i < MAXCTX; i++) if (g_ctx[i].used && g_ctx[i].flow == flow && g_ctx[i].layer == layer && g_ctx[i].callout == callout) return STATUS_FWP_ALREADY_EXISTS;
  for (int i = 0; i < MAXCTX; i++) if (!g_ctx[i].used) {
    g_ctx[i].used = 1; g_ctx[i].flow = flow; g_ctx[i].layer = layer; g_ctx[i].callout = callout; g_ctx[i].ctx = ctx;
    return STATUS_SUCCESS;
  }
  return STATUS_INSUFFICIENT_RESOURCES;
}
static FLOW_DELETE_FN flow_delete_of(UINT32 callout) {
  for (int i = 0; i < MAXN; i++) if (g_reg[i].used && g_reg[i].id == callout) return g_reg[i].flow_delete;
  return NULL;
}
__declspec(dllexport) NTSTATUS NTAPI FwpsFlowRemoveContext0(UINT64 flow, UINT16 layer, UINT32 callout) {
  for (int i = 0; i < MAXCTX; i++) if (g_ctx[i].used && g_ctx[i].flow == flow && g_ctx[i].layer == layer && g_ctx[i].callout == callout) {
    UINT64 ctx = g_ctx[i].ctx;
    FLOW_DELETE_FN fd = flow_delete_of(callout);
    g_ctx[i].used = 0;
    if (fd) fd(layer, callout, ctx);
    return STATUS_SUCCESS;
  }
  return STATUS_FWP_NOT_FOUND;
}

/* ---- playing the engine ---------------------------------------------------------- */

static UINT16 run_layer(enum standin_op op, int v6) {
  switch (op) {
  case STANDIN_ALE_CONNECT: return v6 ? 50 : 48;
  case STANDIN_FLOW_ESTABLISHED: return v6 ? 54 : 52;
  case STANDIN_STREAM: return v6 ? 22 : 20;
  case STANDIN_DATAGRAM: return v6 ? 26 : 24;
  default: return 0;
  }
}
static const GUID *layer_key(UINT16 id) {
  for (unsigned i = 0; i < NLAYERS; i++) if (LAYERS[i].v4_id == id) return &LAYERS[i].key;
  return NULL;
}
static int find_reg(const GUID *key) {
  for (int i = 0; i < MAXN; i++) if (g_reg[i].used && guid_eq(&g_reg[i].key, key)) return i;
  return -1;
}
static int find_reg_id(UINT32 id) {
  for (int i = 0; i < MAXN; i++) if (g_reg[i].used && g_reg[i].id == id) return i;
  return -1;
}

/* A NET_BUFFER_LIST holding `lead` junk bytes then `len` bytes of `data`, split into
 * two MDLs at `split` (if inside), with the data offset after the junk. */
struct chain { SI_NET_BUFFER_LIST nbl; SI_NET_BUFFER nb; MDL m1, m2; UINT8 *buf; };
static int build_chain(struct chain *c, const UINT8 *data, ULONG len, ULONG split, ULONG lead) {
  RtlZeroMemory(c, sizeof *c);
  c->buf = ExAllocatePoolWithTag(NonPagedPool, len + lead + 1, TAG);
  if (!c->buf) return 0;
  RtlFillMemory(c->buf, lead, 0xEE);
  RtlCopyMemory(c->buf + lead, data, len);
  if (split == 0 || split >= len) split = len;
  c->m1.MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
  c->m1.MappedSystemVa = c->m1.StartVa = c->buf;
  c->m1.ByteCount = lead + split;
  c->m1.Size = sizeof(MDL);
  if (split < len) {
    c->m2.MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
    c->m2.MappedSystemVa = c->m2.StartVa = c->buf + lead + split;
    c->m2.ByteCount = len - split;
    c->m2.Size = sizeof(MDL);
    c->m1.Next = &c->m2;
  }
  c->nb.CurrentMdl = c->nb.MdlChain = &c->m1;
  c->nb.CurrentMdlOffset = c->nb.DataOffset = lead;
  c->nb.DataLength = len;
  c->nbl.FirstNetBuffer = &c->nb;
  return 1;
}
static void free_chain(struct chain *c) { if (c->buf) ExFreePoolWithTag(c->buf, TAG); }

static NTSTATUS play(const struct standin_request *rq, ULONG rq_len, struct standin_result *res) {
  int v6 = rq->ip_version == 6;
  UINT16 layer = run_layer((enum standin_op)rq->op, v6);
  FWPS_INCOMING_VALUE0 vals[16];
  FWPS_INCOMING_VALUES0 in;
  FWPS_INCOMING_METADATA_VALUES0 md;
  FWPS_CLASSIFY_OUT0 out;
  FWP_BYTE_BLOB path_blob, tai_blob;
  UINT8 la[16], ra[16];
  SI_SID_AND_ATTRIBUTES saa;
  SI_SID_HASH hash;
  SI_TOKEN_ACCESS_INFORMATION tai;
  struct chain ch;
  FWPS_STREAM_DATA0 sd;
  FWPS_STREAM_CALLOUT_IO_PACKET0 iop;
  void *layer_data = NULL;
  UINT64 flow_ctx = 0;
  int reg = -1;
  ULONG path_units = 0;

  if (rq_len < sizeof *rq + rq->data_len) return STATUS_INVALID_PARAMETER;
  RtlZeroMemory(&ch, sizeof ch);

  if (rq->op == STANDIN_FLOW_DELETE) {
    for (int i = 0; i < MAXCTX; i++) if (g_ctx[i].used && g_ctx[i].flow == rq->flow_id) {
      FwpsFlowRemoveContext0(g_ctx[i].flow, g_ctx[i].layer, g_ctx[i].callout);
      res->classified++;
    }
    goto done;
  }
  if (!layer) return STATUS_INVALID_PARAMETER;

  /* Which callout runs: ALE layers through a matching filter of this layer; stream and
   * datagram layers through the flow's context (FWP_CALLOUT_FLAG_CONDITIONAL_ON_FLOW). */
  if (rq->op == STANDIN_ALE_CONNECT || rq->op == STANDIN_FLOW_ESTABLISHED) {
    const GUID *lk = layer_key(layer);
    for (int i = 0; i < MAXN && reg < 0; i++) {
      if (!g_filters[i].used || !lk || !guid_eq(&g_filters[i].layer, lk)) continue;
      if (g_filters[i].nconds) {
        if (guid_eq(&g_filters[i].cond_key, &COND_REMOTE_PORT)) {
          if (g_filters[i].cond_value != rq->remote_port) continue;
        } else if (guid_eq(&g_filters[i].cond_key, &COND_PROTOCOL)) {
          if (g_filters[i].cond_value != rq->protocol) continue;
        } else continue;
      }
      reg = find_reg(&g_filters[i].callout);
    }
  } else {
    for (int i = 0; i < MAXCTX; i++) if (g_ctx[i].used && g_ctx[i].flow == rq->flow_id && g_ctx[i].layer == layer) {
      reg = find_reg_id(g_ctx[i].callout);
      flow_ctx = g_ctx[i].ctx;
      break;
    }
  }
  if (reg < 0 || !g_reg[reg].classify) goto done;

  /* Incoming values in the layer's field order. */
  RtlZeroMemory(vals, sizeof vals);
  RtlZeroMemory(&md, sizeof md);
  RtlCopyMemory(la, rq->local_addr, 16);
  RtlCopyMemory(ra, rq->remote_addr, 16);
#define ADDR(idx, a) do { if (v6) { vals[idx].value.type = FWP_BYTE_ARRAY16_TYPE; vals[idx].value.value = (UINT64)(ULONG_PTR)(a); } \
    else { vals[idx].value.type = FWP_UINT32; vals[idx].value.value = ((UINT32)(a)[0] << 24) | ((UINT32)(a)[1] << 16) | ((UINT32)(a)[2] << 8) | (a)[3]; } } while (0)
#define U8(idx, v) do { vals[idx].value.type = FWP_UINT8; vals[idx].value.value = (UINT8)(v); } while (0)
#define U16(idx, v) do { vals[idx].value.type = FWP_UINT16; vals[idx].value.value = (UINT16)(v); } while (0)
#define U32(idx, v) do { vals[idx].value.type = FWP_UINT32; vals[idx].value.value = (UINT32)(v); } while (0)
  in.layerId = layer;
  in.incomingValue = vals;
  switch (rq->op) {
  case STANDIN_ALE_CONNECT:
  case STANDIN_FLOW_ESTABLISHED:
    /* APP_ID, USER_ID, LOCAL_ADDRESS, LOCAL_ADDRESS_TYPE, LOCAL_PORT, PROTOCOL,
     * REMOTE_ADDRESS, REMOTE_PORT, ..., [flow established] DIRECTION at 12. */
    if (rq->user_sid_len) {
      saa.Sid = (void *)rq->user_sid; saa.Attributes = 0;
      RtlZeroMemory(&hash, sizeof hash); hash.SidCount = 1; hash.SidAttr = &saa;
      RtlZeroMemory(&tai, sizeof tai); tai.SidHash = &hash;
      tai_blob.size = sizeof tai; tai_blob.data = (UINT8 *)&tai;
      vals[1].value.type = FWP_TOKEN_ACCESS_INFORMATION_TYPE; vals[1].value.value = (UINT64)(ULONG_PTR)&tai_blob;
    }
    ADDR(2, la); U16(4, rq->local_port); U8(5, rq->protocol); ADDR(6, ra); U16(7, rq->remote_port);
    in.valueCount = rq->op == STANDIN_ALE_CONNECT ? 12 : 13;
    if (rq->op == STANDIN_FLOW_ESTABLISHED) U32(12, rq->inbound ? 1 : 0);
    break;
  case STANDIN_STREAM:
    /* LOCAL_ADDRESS, LOCAL_ADDRESS_TYPE, REMOTE_ADDRESS, LOCAL_PORT, REMOTE_PORT, DIRECTION */
    ADDR(0, la); ADDR(2, ra); U16(3, rq->local_port); U16(4, rq->remote_port); U32(5, rq->inbound ? 1 : 0);
    in.valueCount = 8;
    break;
  case STANDIN_DATAGRAM:
    /* PROTOCOL, LOCAL_ADDRESS, REMOTE_ADDRESS, ..., LOCAL_PORT 4, REMOTE_PORT 5, DIRECTION 9 */
    U8(0, rq->protocol); ADDR(1, la); ADDR(2, ra); U16(4, rq->local_port); U16(5, rq->remote_port);
    U32(9, rq->inbound ? 1 : 0);
    in.valueCount = 12;
    break;
  }

  /* Metadata. */
  if (rq->process_id) { md.currentMetadataValues |= FWPS_METADATA_FIELD_PROCESS_ID; md.processId = rq->process_id; }
  while (path_units < 260 && rq->app_path[path_units]) path_units++;
  if (path_units) {
    path_blob.size = (path_units + 1) * 2; /* the engine's blob counts the NUL */
    path_blob.data = (UINT8 *)rq->app_path;
    md.currentMetadataValues |= FWPS_METADATA_FIELD_PROCESS_PATH;
    md.processPath = &path_blob;
  }
  if (rq->op != STANDIN_ALE_CONNECT) { md.currentMetadataValues |= FWPS_METADATA_FIELD_FLOW_HANDLE; md.flowHandle = rq->flow_id; }

  /* Layer data. */
  if (rq->op == STANDIN_STREAM) {
    if (!build_chain(&ch, rq->data, rq->data_len, rq->mdl_split, 3)) return STATUS_INSUFFICIENT_RESOURCES;
    RtlZeroMemory(&sd, sizeof sd);
    RtlZeroMemory(&iop, sizeof iop);
    sd.flags = rq->stream_flags;
    sd.dataOffset.netBufferList = &ch.nbl;
    sd.dataOffset.netBuffer = &ch.nb;
    sd.dataOffset.mdl = &ch.m1;
    sd.dataOffset.mdlOffset = 3;
    sd.dataLength = (SIZE_T)rq->data_len + rq->declared_extra;
    sd.netBufferListChain = &ch.nbl;
    iop.streamData = &sd;
    layer_data = &iop;
  } else if ((rq->op == STANDIN_DATAGRAM || rq->op == STANDIN_ALE_CONNECT) && rq->data_len) {
    /* Outbound datagrams are indicated at their UDP header (transportHeaderSize says
     * how far to skip); inbound ones at the payload. */
    UINT8 *tmp = ExAllocatePoolWithTag(NonPagedPool, rq->data_len + 8, TAG);
    if (!tmp) return STATUS_INSUFFICIENT_RESOURCES;
    ULONG hdr = rq->inbound ? 0 : 8;
    if (hdr) {
      tmp[0] = (UINT8)(rq->local_port >> 8); tmp[1] = (UINT8)rq->local_port;
      tmp[2] = (UINT8)(rq->remote_port >> 8); tmp[3] = (UINT8)rq->remote_port;
      tmp[4] = (UINT8)((rq->data_len + 8) >> 8); tmp[5] = (UINT8)(rq->data_len + 8); tmp[6] = tmp[7] = 0;
      md.currentMetadataValues |= FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE;
      md.transportHeaderSize = 8;
    }
    RtlCopyMemory(tmp + hdr, rq->data, rq->data_len);
    int ok = build_chain(&ch, tmp, rq->data_len + hdr, rq->mdl_split ? rq->mdl_split + hdr : 0, 5);
    ExFreePoolWithTag(tmp, TAG);
    if (!ok) return STATUS_INSUFFICIENT_RESOURCES;
    layer_data = &ch.nbl;
  }

  RtlZeroMemory(&out, sizeof out);
  out.rights = FWPS_RIGHT_ACTION_WRITE;
  out.actionType = 0;
  g_reg[reg].classify(&in, &md, layer_data, NULL, NULL, flow_ctx, &out);
  res->classified = 1;
  res->action = out.actionType;
  res->rights = out.rights;
  if (rq->op == STANDIN_STREAM) { res->stream_action = iop.streamAction; res->bytes_required = iop.countBytesRequired; }
  free_chain(&ch);
done:
  for (int i = 0; i < MAXCTX; i++) res->contexts += g_ctx[i].used;
  return STATUS_SUCCESS;
}
