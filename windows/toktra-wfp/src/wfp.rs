//! The slice of the Windows kernel, NDIS and WFP API this driver uses, declared by hand
//! because mingw-w64 ships no fwpsk.h/fwpmk.h and no fwpkclnt import library.
//!
//! Every layout here was checked against the WDK documentation of fwpsk.h, fwpmk.h,
//! fwptypes.h, fwpmtypes.h and ndis.h (x64), and the user-mode shared types (FWPM_*,
//! FWP_*) additionally against mingw's fwpmtypes.h by `layout_check.c`, which the
//! driver build compiles with the same numbers as `static_assert`s. The compile-time
//! assertions at the bottom of this file fail the build if any field moves.
//!
//! Structures the engine hands us (metadata, incoming values, stream data) are only
//! ever read through the engine's pointer; where only a prefix is declared, that is
//! said, and nothing past the prefix is touched.
#![allow(non_camel_case_types, non_snake_case, dead_code)]

use core::ffi::c_void;

pub type NTSTATUS = i32;
pub const STATUS_SUCCESS: NTSTATUS = 0;
pub const STATUS_UNSUCCESSFUL: NTSTATUS = 0xC000_0001_u32 as i32;
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC000_0010_u32 as i32;
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC000_0023_u32 as i32;
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as i32;
pub const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;

pub const fn nt_success(s: NTSTATUS) -> bool {
    s >= 0
}

#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GUID {
    pub data1: u32,
    pub data2: u16,
    pub data3: u16,
    pub data4: [u8; 8],
}

impl GUID {
    pub const fn from_u128(v: u128) -> Self {
        Self {
            data1: (v >> 96) as u32,
            data2: (v >> 80) as u16,
            data3: (v >> 64) as u16,
            data4: (v as u64).to_be_bytes(),
        }
    }
}

#[repr(C)]
pub struct UNICODE_STRING {
    pub Length: u16,
    pub MaximumLength: u16,
    pub Buffer: *const u16,
}

// ---- fwptypes.h -------------------------------------------------------------------

pub type FWP_DATA_TYPE = u32;
pub const FWP_EMPTY: FWP_DATA_TYPE = 0;
pub const FWP_UINT8: FWP_DATA_TYPE = 1;
pub const FWP_UINT16: FWP_DATA_TYPE = 2;
pub const FWP_UINT32: FWP_DATA_TYPE = 3;
pub const FWP_UINT64: FWP_DATA_TYPE = 4;
pub const FWP_BYTE_ARRAY16_TYPE: FWP_DATA_TYPE = 11;
pub const FWP_BYTE_BLOB_TYPE: FWP_DATA_TYPE = 12;
pub const FWP_SID: FWP_DATA_TYPE = 13;
pub const FWP_TOKEN_ACCESS_INFORMATION_TYPE: FWP_DATA_TYPE = 16;

pub type FWP_MATCH_TYPE = u32;
pub const FWP_MATCH_EQUAL: FWP_MATCH_TYPE = 0;

#[repr(C)]
pub struct FWP_BYTE_BLOB {
    pub size: u32,
    pub data: *const u8,
}

#[repr(C)]
pub struct FWP_BYTE_ARRAY16 {
    pub byteArray16: [u8; 16],
}

/// FWP_VALUE0 and FWP_CONDITION_VALUE0 share this shape: a type tag and an 8-byte
/// union that holds either a small integer (in its low bytes) or a pointer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWP_VALUE0 {
    pub type_: FWP_DATA_TYPE,
    pub value: u64,
}
pub type FWP_CONDITION_VALUE0 = FWP_VALUE0;

impl FWP_VALUE0 {
    pub const EMPTY: Self = Self {
        type_: FWP_EMPTY,
        value: 0,
    };
    pub const fn uint8(v: u8) -> Self {
        Self {
            type_: FWP_UINT8,
            value: v as u64,
        }
    }
    pub const fn uint16(v: u16) -> Self {
        Self {
            type_: FWP_UINT16,
            value: v as u64,
        }
    }
}

pub type FWP_ACTION_TYPE = u32;
pub const FWP_ACTION_FLAG_TERMINATING: u32 = 0x0000_1000;
pub const FWP_ACTION_FLAG_NON_TERMINATING: u32 = 0x0000_2000;
pub const FWP_ACTION_FLAG_CALLOUT: u32 = 0x0000_4000;
/// Our filters' action: the callout is invoked but may never decide.
pub const FWP_ACTION_CALLOUT_INSPECTION: FWP_ACTION_TYPE =
    0x4 | FWP_ACTION_FLAG_CALLOUT | FWP_ACTION_FLAG_NON_TERMINATING;
/// What every classify of this driver returns: no opinion, let the next filter decide.
pub const FWP_ACTION_CONTINUE: FWP_ACTION_TYPE = 0x6 | FWP_ACTION_FLAG_NON_TERMINATING;
pub const FWP_ACTION_BLOCK: FWP_ACTION_TYPE = 0x1 | FWP_ACTION_FLAG_TERMINATING;
pub const FWP_ACTION_PERMIT: FWP_ACTION_TYPE = 0x2 | FWP_ACTION_FLAG_TERMINATING;

// ---- fwpmtypes.h ------------------------------------------------------------------

#[repr(C)]
pub struct FWPM_DISPLAY_DATA0 {
    pub name: *const u16,
    pub description: *const u16,
}

#[repr(C)]
pub struct FWPM_SESSION0 {
    pub sessionKey: GUID,
    pub displayData: FWPM_DISPLAY_DATA0,
    pub flags: u32,
    pub txnWaitTimeoutInMSec: u32,
    pub processId: u32,
    pub sid: *const c_void,
    pub username: *const u16,
    pub kernelMode: i32,
}
/// Objects added in a dynamic session vanish when the engine handle closes, so even a
/// driver that failed half-way through DriverEntry leaves nothing behind.
pub const FWPM_SESSION_FLAG_DYNAMIC: u32 = 0x0000_0001;

#[repr(C)]
pub struct FWPM_PROVIDER0 {
    pub providerKey: GUID,
    pub displayData: FWPM_DISPLAY_DATA0,
    pub flags: u32,
    pub providerData: FWP_BYTE_BLOB,
    pub serviceName: *const u16,
}

#[repr(C)]
pub struct FWPM_SUBLAYER0 {
    pub subLayerKey: GUID,
    pub displayData: FWPM_DISPLAY_DATA0,
    pub flags: u16,
    pub providerKey: *const GUID,
    pub providerData: FWP_BYTE_BLOB,
    pub weight: u16,
}

#[repr(C)]
pub struct FWPM_CALLOUT0 {
    pub calloutKey: GUID,
    pub displayData: FWPM_DISPLAY_DATA0,
    pub flags: u32,
    pub providerKey: *const GUID,
    pub providerData: FWP_BYTE_BLOB,
    pub applicableLayer: GUID,
    pub calloutId: u32,
}

#[repr(C)]
pub struct FWPM_ACTION0 {
    pub type_: FWP_ACTION_TYPE,
    /// Union of filterType / calloutKey; ours is always the callout key.
    pub calloutKey: GUID,
}

#[repr(C)]
pub struct FWPM_FILTER_CONDITION0 {
    pub fieldKey: GUID,
    pub matchType: FWP_MATCH_TYPE,
    pub conditionValue: FWP_CONDITION_VALUE0,
}

#[repr(C)]
pub struct FWPM_FILTER0 {
    pub filterKey: GUID,
    pub displayData: FWPM_DISPLAY_DATA0,
    pub flags: u32,
    pub providerKey: *const GUID,
    pub providerData: FWP_BYTE_BLOB,
    pub layerKey: GUID,
    pub subLayerKey: GUID,
    pub weight: FWP_VALUE0,
    pub numFilterConditions: u32,
    pub filterCondition: *const FWPM_FILTER_CONDITION0,
    pub action: FWPM_ACTION0,
    /// Union of rawContext (u64) / providerContextKey (GUID): 16 bytes, 8-aligned.
    pub providerContext: [u64; 2],
    pub reserved: *const GUID,
    pub filterId: u64,
    pub effectiveWeight: FWP_VALUE0,
}

// ---- fwpsk.h ----------------------------------------------------------------------

/// Run-time layer ids (FWPS_BUILTIN_LAYERS), the `layerId` of incoming values.
pub const FWPS_LAYER_STREAM_V4: u16 = 20;
pub const FWPS_LAYER_STREAM_V6: u16 = 22;
pub const FWPS_LAYER_DATAGRAM_DATA_V4: u16 = 24;
pub const FWPS_LAYER_DATAGRAM_DATA_V6: u16 = 26;
pub const FWPS_LAYER_ALE_AUTH_CONNECT_V4: u16 = 48;
pub const FWPS_LAYER_ALE_AUTH_CONNECT_V6: u16 = 50;
pub const FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4: u16 = 52;
pub const FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6: u16 = 54;

/// Field indices. ALE_AUTH_CONNECT_V4/V6 and ALE_FLOW_ESTABLISHED_V4/V6 share the
/// first eight (FWPS_FIELDS_ALE_AUTH_CONNECT_V4 etc.).
pub const FWPS_FIELD_ALE_APP_ID: usize = 0;
pub const FWPS_FIELD_ALE_USER_ID: usize = 1;
pub const FWPS_FIELD_ALE_IP_LOCAL_ADDRESS: usize = 2;
pub const FWPS_FIELD_ALE_IP_LOCAL_PORT: usize = 4;
pub const FWPS_FIELD_ALE_IP_PROTOCOL: usize = 5;
pub const FWPS_FIELD_ALE_IP_REMOTE_ADDRESS: usize = 6;
pub const FWPS_FIELD_ALE_IP_REMOTE_PORT: usize = 7;
/// FWPS_FIELDS_ALE_FLOW_ESTABLISHED_V4: DIRECTION follows the remote machine id,
/// destination address type, local interface, ... — index 12 in the WDK enum
/// (APP_ID, USER_ID, LOCAL_ADDRESS, LOCAL_ADDRESS_TYPE, LOCAL_PORT, PROTOCOL,
/// REMOTE_ADDRESS, REMOTE_PORT, REMOTE_USER_ID, REMOTE_MACHINE_ID,
/// DESTINATION_ADDRESS_TYPE, LOCAL_INTERFACE, DIRECTION).
pub const FWPS_FIELD_ALE_FLOW_ESTABLISHED_DIRECTION: usize = 12;

pub const FWP_DIRECTION_OUTBOUND: u32 = 0;
pub const FWP_DIRECTION_INBOUND: u32 = 1;

#[repr(C)]
pub struct FWPS_INCOMING_VALUE0 {
    pub value: FWP_VALUE0,
}

#[repr(C)]
pub struct FWPS_INCOMING_VALUES0 {
    pub layerId: u16,
    pub valueCount: u32,
    pub incomingValue: *const FWPS_INCOMING_VALUE0,
}

#[repr(C)]
pub struct FWPS_DISCARD_METADATA0 {
    pub discardModule: u32,
    pub discardReason: u32,
    pub filterId: u64,
}

/// FWPS_INCOMING_METADATA_VALUES0, declared up to `processId`: the engine owns and
/// allocates it; this driver only reads these leading fields through its pointer.
#[repr(C)]
pub struct FWPS_INCOMING_METADATA_VALUES0_PREFIX {
    pub currentMetadataValues: u32,
    pub flags: u32,
    pub reserved: u64,
    pub discardMetadata: FWPS_DISCARD_METADATA0,
    pub flowHandle: u64,
    pub ipHeaderSize: u32,
    pub transportHeaderSize: u32,
    pub processPath: *const FWP_BYTE_BLOB,
    pub token: u64,
    pub processId: u64,
}

pub const FWPS_METADATA_FIELD_FLOW_HANDLE: u32 = 0x0000_0002;
pub const FWPS_METADATA_FIELD_PROCESS_PATH: u32 = 0x0000_0008;
pub const FWPS_METADATA_FIELD_TOKEN: u32 = 0x0000_0010;
pub const FWPS_METADATA_FIELD_PROCESS_ID: u32 = 0x0000_0020;
pub const FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE: u32 = 0x0000_0400;

#[repr(C)]
pub struct FWPS_CLASSIFY_OUT0 {
    pub actionType: FWP_ACTION_TYPE,
    pub outContext: u64,
    pub filterId: u64,
    pub rights: u32,
    pub flags: u32,
    pub reserved: u32,
}
/// The right to set a terminating action. An inspection callout leaves it alone:
/// clearing it would stop lower-weight filters (the firewall) from deciding.
pub const FWPS_RIGHT_ACTION_WRITE: u32 = 0x0000_0001;

pub type FWPS_CALLOUT_CLASSIFY_FN1 = unsafe extern "system" fn(
    inFixedValues: *const FWPS_INCOMING_VALUES0,
    inMetaValues: *const FWPS_INCOMING_METADATA_VALUES0_PREFIX,
    layerData: *mut c_void,
    classifyContext: *const c_void,
    filter: *const c_void,
    flowContext: u64,
    classifyOut: *mut FWPS_CLASSIFY_OUT0,
);
pub type FWPS_CALLOUT_NOTIFY_FN1 = unsafe extern "system" fn(
    notifyType: u32,
    filterKey: *const GUID,
    filter: *mut c_void,
) -> NTSTATUS;
pub type FWPS_CALLOUT_FLOW_DELETE_NOTIFY_FN0 =
    unsafe extern "system" fn(layerId: u16, calloutId: u32, flowContext: u64);

#[repr(C)]
pub struct FWPS_CALLOUT1 {
    pub calloutKey: GUID,
    pub flags: u32,
    pub classifyFn: FWPS_CALLOUT_CLASSIFY_FN1,
    pub notifyFn: FWPS_CALLOUT_NOTIFY_FN1,
    pub flowDeleteFn: Option<FWPS_CALLOUT_FLOW_DELETE_NOTIFY_FN0>,
}
/// The callout is only invoked for flows that carry a context of ours.
pub const FWP_CALLOUT_FLAG_CONDITIONAL_ON_FLOW: u32 = 0x0000_0001;

#[repr(C)]
pub struct FWPS_STREAM_DATA_OFFSET0 {
    pub netBufferList: *const NET_BUFFER_LIST,
    pub netBuffer: *const NET_BUFFER,
    pub mdl: *const MDL,
    pub mdlOffset: u32,
    pub netBufferOffset: u32,
    pub streamDataOffset: usize,
}

#[repr(C)]
pub struct FWPS_STREAM_DATA0 {
    pub flags: u32,
    pub dataOffset: FWPS_STREAM_DATA_OFFSET0,
    pub dataLength: usize,
    pub netBufferListChain: *const NET_BUFFER_LIST,
}
pub const FWPS_STREAM_FLAG_RECEIVE: u32 = 0x0000_0001;
pub const FWPS_STREAM_FLAG_SEND: u32 = 0x0000_0010;

#[repr(C)]
pub struct FWPS_STREAM_CALLOUT_IO_PACKET0 {
    pub streamData: *const FWPS_STREAM_DATA0,
    pub missedBytes: usize,
    pub countBytesRequired: u32,
    pub countBytesEnforced: usize,
    /// FWPS_STREAM_ACTION_TYPE; left at FWPS_STREAM_ACTION_NONE (0): never defer,
    /// never ask for more data, never drop.
    pub streamAction: u32,
}
pub const FWPS_STREAM_ACTION_NONE: u32 = 0;

// ---- ndis.h / wdm.h ---------------------------------------------------------------

/// NET_BUFFER_LIST, declared up to FirstNetBuffer (the header union is 16-aligned on
/// x64 because of its SLIST_HEADER arm).
#[repr(C, align(16))]
pub struct NET_BUFFER_LIST {
    pub Next: *const NET_BUFFER_LIST,
    pub FirstNetBuffer: *const NET_BUFFER,
}

/// NET_BUFFER, declared up to DataOffset.
#[repr(C, align(16))]
pub struct NET_BUFFER {
    pub Next: *const NET_BUFFER,
    pub CurrentMdl: *const MDL,
    pub CurrentMdlOffset: u32,
    /// Union of ULONG DataLength / SIZE_T stDataLength; the ULONG is the low half.
    pub DataLength: usize,
    pub MdlChain: *const MDL,
    pub DataOffset: u32,
}

#[repr(C)]
pub struct MDL {
    pub Next: *const MDL,
    pub Size: i16,
    pub MdlFlags: i16,
    pub Process: *const c_void,
    pub MappedSystemVa: *const u8,
    pub StartVa: *const u8,
    pub ByteCount: u32,
    pub ByteOffset: u32,
}
pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x0001;
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;

// ---- run-time layer and condition keys (fwpmu.h / fwpmk.h GUIDs) ------------------

pub const FWPM_LAYER_ALE_AUTH_CONNECT_V4: GUID =
    GUID::from_u128(0xc38d57d1_05a7_4c33_904f_7fbceee60e82);
pub const FWPM_LAYER_ALE_AUTH_CONNECT_V6: GUID =
    GUID::from_u128(0x4a72393b_319f_44bc_84c3_ba54dcb3b6b4);
pub const FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4: GUID =
    GUID::from_u128(0xaf80470a_5596_4c13_9992_539e6fe57967);
pub const FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6: GUID =
    GUID::from_u128(0x7021d2b3_dfa4_406e_afeb_6afaf7e70efd);
pub const FWPM_LAYER_STREAM_V4: GUID = GUID::from_u128(0x3b89653c_c170_49e4_b1cd_e0eeeee19a3e);
pub const FWPM_LAYER_STREAM_V6: GUID = GUID::from_u128(0x47c9137a_7ec4_46b3_b6e4_48e926b1eda4);
pub const FWPM_LAYER_DATAGRAM_DATA_V4: GUID =
    GUID::from_u128(0x3d08bf4e_45f6_4930_a922_417098e20027);
pub const FWPM_LAYER_DATAGRAM_DATA_V6: GUID =
    GUID::from_u128(0xfa45fe2f_3cba_4427_87fc_57b9a4b10d00);
pub const FWPM_CONDITION_IP_REMOTE_PORT: GUID =
    GUID::from_u128(0xc35a604d_d22b_4e1a_91b4_68f674ee674b);
pub const FWPM_CONDITION_IP_PROTOCOL: GUID =
    GUID::from_u128(0x3971ef2b_623e_4f9a_8cb1_6e79b806b9a7);

// ---- layout pins (x64) ------------------------------------------------------------

#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<GUID>() == 16 && align_of::<GUID>() == 4);
    assert!(size_of::<UNICODE_STRING>() == 16 && offset_of!(UNICODE_STRING, Buffer) == 8);
    assert!(size_of::<FWP_BYTE_BLOB>() == 16 && offset_of!(FWP_BYTE_BLOB, data) == 8);
    assert!(size_of::<FWP_VALUE0>() == 16 && offset_of!(FWP_VALUE0, value) == 8);
    assert!(size_of::<FWPM_DISPLAY_DATA0>() == 16);
    assert!(size_of::<FWPM_SESSION0>() == 72);
    assert!(offset_of!(FWPM_SESSION0, flags) == 32);
    assert!(offset_of!(FWPM_SESSION0, processId) == 40);
    assert!(offset_of!(FWPM_SESSION0, sid) == 48);
    assert!(offset_of!(FWPM_SESSION0, kernelMode) == 64);
    assert!(size_of::<FWPM_PROVIDER0>() == 64);
    assert!(offset_of!(FWPM_PROVIDER0, providerData) == 40);
    assert!(offset_of!(FWPM_PROVIDER0, serviceName) == 56);
    assert!(size_of::<FWPM_SUBLAYER0>() == 72);
    assert!(offset_of!(FWPM_SUBLAYER0, flags) == 32);
    assert!(offset_of!(FWPM_SUBLAYER0, providerKey) == 40);
    assert!(offset_of!(FWPM_SUBLAYER0, weight) == 64);
    assert!(size_of::<FWPM_CALLOUT0>() == 88);
    assert!(offset_of!(FWPM_CALLOUT0, providerKey) == 40);
    assert!(offset_of!(FWPM_CALLOUT0, applicableLayer) == 64);
    assert!(offset_of!(FWPM_CALLOUT0, calloutId) == 80);
    assert!(size_of::<FWPM_ACTION0>() == 20 && align_of::<FWPM_ACTION0>() == 4);
    assert!(size_of::<FWPM_FILTER_CONDITION0>() == 40);
    assert!(offset_of!(FWPM_FILTER_CONDITION0, matchType) == 16);
    assert!(offset_of!(FWPM_FILTER_CONDITION0, conditionValue) == 24);
    assert!(size_of::<FWPM_FILTER0>() == 200);
    assert!(offset_of!(FWPM_FILTER0, flags) == 32);
    assert!(offset_of!(FWPM_FILTER0, providerKey) == 40);
    assert!(offset_of!(FWPM_FILTER0, providerData) == 48);
    assert!(offset_of!(FWPM_FILTER0, layerKey) == 64);
    assert!(offset_of!(FWPM_FILTER0, subLayerKey) == 80);
    assert!(offset_of!(FWPM_FILTER0, weight) == 96);
    assert!(offset_of!(FWPM_FILTER0, numFilterConditions) == 112);
    assert!(offset_of!(FWPM_FILTER0, filterCondition) == 120);
    assert!(offset_of!(FWPM_FILTER0, action) == 128);
    assert!(offset_of!(FWPM_FILTER0, providerContext) == 152);
    assert!(offset_of!(FWPM_FILTER0, reserved) == 168);
    assert!(offset_of!(FWPM_FILTER0, filterId) == 176);
    assert!(offset_of!(FWPM_FILTER0, effectiveWeight) == 184);

    assert!(size_of::<FWPS_INCOMING_VALUE0>() == 16);
    assert!(size_of::<FWPS_INCOMING_VALUES0>() == 16);
    assert!(offset_of!(FWPS_INCOMING_VALUES0, valueCount) == 4);
    assert!(offset_of!(FWPS_INCOMING_VALUES0, incomingValue) == 8);
    assert!(size_of::<FWPS_DISCARD_METADATA0>() == 16);
    assert!(offset_of!(FWPS_INCOMING_METADATA_VALUES0_PREFIX, discardMetadata) == 16);
    assert!(offset_of!(FWPS_INCOMING_METADATA_VALUES0_PREFIX, flowHandle) == 32);
    assert!(offset_of!(FWPS_INCOMING_METADATA_VALUES0_PREFIX, transportHeaderSize) == 44);
    assert!(offset_of!(FWPS_INCOMING_METADATA_VALUES0_PREFIX, processPath) == 48);
    assert!(offset_of!(FWPS_INCOMING_METADATA_VALUES0_PREFIX, token) == 56);
    assert!(offset_of!(FWPS_INCOMING_METADATA_VALUES0_PREFIX, processId) == 64);
    assert!(size_of::<FWPS_CLASSIFY_OUT0>() == 40);
    assert!(offset_of!(FWPS_CLASSIFY_OUT0, outContext) == 8);
    assert!(offset_of!(FWPS_CLASSIFY_OUT0, filterId) == 16);
    assert!(offset_of!(FWPS_CLASSIFY_OUT0, rights) == 24);
    assert!(offset_of!(FWPS_CLASSIFY_OUT0, flags) == 28);
    assert!(size_of::<FWPS_CALLOUT1>() == 48);
    assert!(offset_of!(FWPS_CALLOUT1, flags) == 16);
    assert!(offset_of!(FWPS_CALLOUT1, classifyFn) == 24);
    assert!(offset_of!(FWPS_CALLOUT1, notifyFn) == 32);
    assert!(offset_of!(FWPS_CALLOUT1, flowDeleteFn) == 40);
    assert!(size_of::<FWPS_STREAM_DATA_OFFSET0>() == 40);
    assert!(offset_of!(FWPS_STREAM_DATA_OFFSET0, mdlOffset) == 24);
    assert!(offset_of!(FWPS_STREAM_DATA_OFFSET0, streamDataOffset) == 32);
    assert!(size_of::<FWPS_STREAM_DATA0>() == 64);
    assert!(offset_of!(FWPS_STREAM_DATA0, dataOffset) == 8);
    assert!(offset_of!(FWPS_STREAM_DATA0, dataLength) == 48);
    assert!(offset_of!(FWPS_STREAM_DATA0, netBufferListChain) == 56);
    assert!(size_of::<FWPS_STREAM_CALLOUT_IO_PACKET0>() == 40);
    assert!(offset_of!(FWPS_STREAM_CALLOUT_IO_PACKET0, countBytesRequired) == 16);
    assert!(offset_of!(FWPS_STREAM_CALLOUT_IO_PACKET0, countBytesEnforced) == 24);
    assert!(offset_of!(FWPS_STREAM_CALLOUT_IO_PACKET0, streamAction) == 32);

    assert!(offset_of!(NET_BUFFER_LIST, FirstNetBuffer) == 8);
    assert!(offset_of!(NET_BUFFER, CurrentMdl) == 8);
    assert!(offset_of!(NET_BUFFER, CurrentMdlOffset) == 16);
    assert!(offset_of!(NET_BUFFER, DataLength) == 24);
    assert!(offset_of!(NET_BUFFER, MdlChain) == 32);
    assert!(offset_of!(NET_BUFFER, DataOffset) == 40);
    assert!(size_of::<MDL>() == 48);
    assert!(offset_of!(MDL, Size) == 8);
    assert!(offset_of!(MDL, MdlFlags) == 10);
    assert!(offset_of!(MDL, MappedSystemVa) == 24);
    assert!(offset_of!(MDL, StartVa) == 32);
    assert!(offset_of!(MDL, ByteCount) == 40);
    assert!(offset_of!(MDL, ByteOffset) == 44);
};
