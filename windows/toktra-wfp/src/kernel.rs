//! The kernel side: DriverEntry/DriverUnload, the control device and its IOCTLs, WFP
//! registration, and the classify / flow-delete functions the filter engine calls.
//! All shared state lives in one [`DriverState`] in non-paged pool, guarded by one
//! spin lock; the logic it guards is in `engine` and `flow`.
#![allow(
    non_snake_case,
    non_camel_case_types,
    dead_code,
    clippy::missing_safety_doc
)]

use core::ffi::c_void;
use core::mem::{size_of, zeroed};
use core::ptr::{self, null, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use driver_abi::{self as abi, EVENT_RECORD_SIZE, EventRecord, VersionInfo};
use toktra_wire::{HelloAssembler, StreamKind};

use crate::engine::{AssemblerPool, Engine};
use crate::flow::{self, Flow, FlowMeta};
use crate::nbl;
use crate::ring::Ring;
use crate::wfp::*;
use crate::{ASSEMBLER_SLOTS, INSPECTED_REMOTE_PORT, MAX_FLOWS, RING_CAPACITY};

// ---- ntoskrnl / wdm declarations --------------------------------------------------

type KSPIN_LOCK = usize;
#[allow(clippy::upper_case_acronyms)] // the WDK's own name, kept so the code reads like wdm.h
type KIRQL = u8;

/// DRIVER_OBJECT (x64), pinned by layout_check.c against mingw's wdm.h.
#[repr(C)]
pub struct DRIVER_OBJECT {
    Type: i16,
    Size: i16,
    DeviceObject: *mut c_void,
    Flags: u32,
    DriverStart: *mut c_void,
    DriverSize: u32,
    DriverSection: *mut c_void,
    DriverExtension: *mut c_void,
    DriverName: UNICODE_STRING,
    HardwareDatabase: *mut c_void,
    FastIoDispatch: *mut c_void,
    DriverInit: *mut c_void,
    DriverStartIo: *mut c_void,
    DriverUnload: Option<unsafe extern "system" fn(*mut DRIVER_OBJECT)>,
    MajorFunction: [Option<unsafe extern "system" fn(*mut c_void, *mut IRP) -> NTSTATUS>; 28],
}

/// IRP (x64), declared up to Tail.Overlay.CurrentStackLocation.
#[repr(C)]
pub struct IRP {
    Type: i16,
    Size: u16,
    MdlAddress: *mut c_void,
    Flags: u32,
    SystemBuffer: *mut c_void,
    ThreadListEntry: [usize; 2],
    IoStatus_Status: isize,
    IoStatus_Information: usize,
    RequestorMode: i8,
    PendingReturned: u8,
    StackCount: i8,
    CurrentLocation: i8,
    Cancel: u8,
    CancelIrql: u8,
    ApcEnvironment: i8,
    AllocationFlags: u8,
    UserIosb: *mut c_void,
    UserEvent: *mut c_void,
    Overlay: [usize; 2],
    CancelRoutine: *mut c_void,
    UserBuffer: *mut c_void,
    DriverContext: [usize; 4],
    Thread: *mut c_void,
    AuxiliaryBuffer: *mut c_void,
    ListEntry: [usize; 2],
    CurrentStackLocation: *mut IO_STACK_LOCATION,
}

/// IO_STACK_LOCATION (x64), declared through Parameters.DeviceIoControl.
#[repr(C)]
pub struct IO_STACK_LOCATION {
    MajorFunction: u8,
    MinorFunction: u8,
    Flags: u8,
    Control: u8,
    /// The Parameters union is pointer-aligned.
    _pad_head: u32,
    OutputBufferLength: u32,
    _pad0: u32,
    InputBufferLength: u32,
    _pad1: u32,
    IoControlCode: u32,
    _pad2: u32,
    Type3InputBuffer: *mut c_void,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(DRIVER_OBJECT, DriverName) == 56);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 104);
    assert!(offset_of!(DRIVER_OBJECT, MajorFunction) == 112);
    assert!(offset_of!(IRP, SystemBuffer) == 24);
    assert!(offset_of!(IRP, IoStatus_Status) == 48);
    assert!(offset_of!(IRP, IoStatus_Information) == 56);
    assert!(offset_of!(IRP, CurrentStackLocation) == 184);
    assert!(offset_of!(IO_STACK_LOCATION, OutputBufferLength) == 8);
    assert!(offset_of!(IO_STACK_LOCATION, InputBufferLength) == 16);
    assert!(offset_of!(IO_STACK_LOCATION, IoControlCode) == 24);
};

const IRP_MJ_CREATE: usize = 0x00;
const IRP_MJ_CLOSE: usize = 0x02;
const IRP_MJ_DEVICE_CONTROL: usize = 0x0e;
const FILE_DEVICE_SECURE_OPEN: u32 = 0x0000_0100;
const NON_PAGED_POOL_NX: u32 = 512;
const POOL_TAG: u32 = u32::from_le_bytes(*b"TkWf");
const MM_CACHED: u32 = 1;
const NORMAL_PAGE_PRIORITY_NO_EXECUTE: u32 = 16 | 0x4000_0000;
const RPC_C_AUTHN_WINNT: u32 = 10;
const DACL_SECURITY_INFORMATION: u32 = 0x4;
const SECURITY_DESCRIPTOR_REVISION: u32 = 1;
const ACL_REVISION: u32 = 2;
const GENERIC_ALL: u32 = 0x1000_0000;
const WRITE_DAC: u32 = 0x0004_0000;
const OBJ_KERNEL_HANDLE: u32 = 0x0000_0200;

#[link(name = "ntoskrnl")]
unsafe extern "system" {
    fn IoCreateDevice(
        driver: *mut DRIVER_OBJECT,
        ext: u32,
        name: *const UNICODE_STRING,
        dev_type: u32,
        characteristics: u32,
        exclusive: u8,
        device: *mut *mut c_void,
    ) -> NTSTATUS;
    fn IoDeleteDevice(device: *mut c_void);
    fn IoCreateSymbolicLink(link: *const UNICODE_STRING, target: *const UNICODE_STRING)
    -> NTSTATUS;
    fn IoDeleteSymbolicLink(link: *const UNICODE_STRING) -> NTSTATUS;
    fn IofCompleteRequest(irp: *mut IRP, boost: i8);
    fn ExAllocatePoolWithTag(pool: u32, bytes: usize, tag: u32) -> *mut c_void;
    fn ExFreePoolWithTag(p: *mut c_void, tag: u32);
    fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL;
    fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, old: KIRQL);
    fn MmMapLockedPagesSpecifyCache(
        mdl: *const MDL,
        mode: i8,
        cache: u32,
        base: *mut c_void,
        bugcheck: u32,
        priority: u32,
    ) -> *mut c_void;
    fn MmGetSystemRoutineAddress(name: *const UNICODE_STRING) -> *mut c_void;
    fn RtlCreateSecurityDescriptor(sd: *mut c_void, revision: u32) -> NTSTATUS;
    fn RtlCreateAcl(acl: *mut c_void, len: u32, revision: u32) -> NTSTATUS;
    fn RtlAddAccessAllowedAce(
        acl: *mut c_void,
        revision: u32,
        mask: u32,
        sid: *const u8,
    ) -> NTSTATUS;
    fn RtlSetDaclSecurityDescriptor(
        sd: *mut c_void,
        present: u8,
        dacl: *mut c_void,
        defaulted: u8,
    ) -> NTSTATUS;
    fn ObOpenObjectByPointer(
        object: *mut c_void,
        attributes: u32,
        access_state: *mut c_void,
        access: u32,
        object_type: *mut c_void,
        mode: i8,
        handle: *mut *mut c_void,
    ) -> NTSTATUS;
    fn ZwSetSecurityObject(handle: *mut c_void, info: u32, sd: *mut c_void) -> NTSTATUS;
    fn ZwClose(handle: *mut c_void) -> NTSTATUS;
    fn memset(dst: *mut c_void, c: i32, n: usize) -> *mut c_void;
}

#[link(name = "fwpkclnt")]
unsafe extern "system" {
    fn FwpmEngineOpen0(
        server: *const u16,
        authn: u32,
        ident: *const c_void,
        session: *const FWPM_SESSION0,
        engine: *mut *mut c_void,
    ) -> NTSTATUS;
    fn FwpmEngineClose0(engine: *mut c_void) -> NTSTATUS;
    fn FwpmTransactionBegin0(engine: *mut c_void, flags: u32) -> NTSTATUS;
    fn FwpmTransactionCommit0(engine: *mut c_void) -> NTSTATUS;
    fn FwpmTransactionAbort0(engine: *mut c_void) -> NTSTATUS;
    fn FwpmProviderAdd0(
        engine: *mut c_void,
        p: *const FWPM_PROVIDER0,
        sd: *const c_void,
    ) -> NTSTATUS;
    fn FwpmProviderDeleteByKey0(engine: *mut c_void, key: *const GUID) -> NTSTATUS;
    fn FwpmSubLayerAdd0(
        engine: *mut c_void,
        s: *const FWPM_SUBLAYER0,
        sd: *const c_void,
    ) -> NTSTATUS;
    fn FwpmSubLayerDeleteByKey0(engine: *mut c_void, key: *const GUID) -> NTSTATUS;
    fn FwpmCalloutAdd0(
        engine: *mut c_void,
        c: *const FWPM_CALLOUT0,
        sd: *const c_void,
        id: *mut u32,
    ) -> NTSTATUS;
    fn FwpmCalloutDeleteById0(engine: *mut c_void, id: u32) -> NTSTATUS;
    fn FwpmFilterAdd0(
        engine: *mut c_void,
        f: *const FWPM_FILTER0,
        sd: *const c_void,
        id: *mut u64,
    ) -> NTSTATUS;
    fn FwpmFilterDeleteById0(engine: *mut c_void, id: u64) -> NTSTATUS;
    fn FwpsCalloutRegister1(device: *mut c_void, c: *const FWPS_CALLOUT1, id: *mut u32)
    -> NTSTATUS;
    fn FwpsCalloutUnregisterById0(id: u32) -> NTSTATUS;
    fn FwpsFlowAssociateContext0(flow: u64, layer: u16, callout: u32, ctx: u64) -> NTSTATUS;
    fn FwpsFlowRemoveContext0(flow: u64, layer: u16, callout: u32) -> NTSTATUS;
}

// ---- identities ---------------------------------------------------------------------

const PROVIDER_KEY: GUID = GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_a001);
const SUBLAYER_KEY: GUID = GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_a002);

/// What each of the eight callouts inspects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Connect,
    Established,
    Stream,
    Datagram,
}

struct CalloutSpec {
    key: GUID,
    layer: GUID,
    role: Role,
    name: &'static [u16],
}

macro_rules! w {
    ($s:literal) => {{
        const W: [u16; $s.len() + 1] = abi::ascii_to_utf16($s);
        &W
    }};
}

const CALLOUTS: [CalloutSpec; 8] = [
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b001),
        layer: FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        role: Role::Connect,
        name: w!("Toktra ALE connect v4"),
    },
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b002),
        layer: FWPM_LAYER_ALE_AUTH_CONNECT_V6,
        role: Role::Connect,
        name: w!("Toktra ALE connect v6"),
    },
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b003),
        layer: FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4,
        role: Role::Established,
        name: w!("Toktra flow established v4"),
    },
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b004),
        layer: FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6,
        role: Role::Established,
        name: w!("Toktra flow established v6"),
    },
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b005),
        layer: FWPM_LAYER_STREAM_V4,
        role: Role::Stream,
        name: w!("Toktra stream v4"),
    },
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b006),
        layer: FWPM_LAYER_STREAM_V6,
        role: Role::Stream,
        name: w!("Toktra stream v6"),
    },
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b007),
        layer: FWPM_LAYER_DATAGRAM_DATA_V4,
        role: Role::Datagram,
        name: w!("Toktra datagram v4"),
    },
    CalloutSpec {
        key: GUID::from_u128(0x6f1c_2a7e_4b0d_4c55_9a3e_5d7b_1c20_b008),
        layer: FWPM_LAYER_DATAGRAM_DATA_V6,
        role: Role::Datagram,
        name: w!("Toktra datagram v6"),
    },
];

const STREAM_V4: usize = 4;
const STREAM_V6: usize = 5;
const DATAGRAM_V4: usize = 6;
const DATAGRAM_V6: usize = 7;

/// FWPS_FIELDS_DATAGRAM_DATA_V4/V6: DIRECTION.
const FWPS_FIELD_DATAGRAM_DATA_DIRECTION: usize = 9;

// ---- state ----------------------------------------------------------------------------

struct DriverState {
    lock: KSPIN_LOCK,
    engine: Engine<'static>,
    device: *mut c_void,
    wfp: *mut c_void,
    /// Run-time callout ids (FwpsCalloutRegister), 0 = not registered.
    callout_ids: [u32; 8],
    /// Management-side callout ids (FwpmCalloutAdd).
    mgmt_callout_ids: [u32; 8],
    filter_ids: [u64; 8],
    now_fn: Option<unsafe extern "system" fn(*mut i64)>,
    ring_mem: *mut c_void,
    asm_mem: *mut c_void,
    in_use_mem: *mut c_void,
    flows_mem: *mut c_void,
    symlink_created: bool,
}

static STATE: AtomicPtr<DriverState> = AtomicPtr::new(null_mut());

/// A zeroed template promoted to a static, copied into each assembler slot so the
/// 17.7 KB value never passes through the kernel stack.
static ASSEMBLER_TEMPLATE: HelloAssembler = HelloAssembler::new(StreamKind::Tls);

fn state() -> Option<&'static mut DriverState> {
    // SAFETY: set once in DriverEntry before any callout or IRP can arrive, cleared in
    // DriverUnload after all of them are gone; mutation of shared parts is under `lock`.
    unsafe { STATE.load(Ordering::Acquire).as_mut() }
}

fn with_engine<R>(st: &mut DriverState, f: impl FnOnce(&mut Engine<'static>) -> R) -> R {
    // SAFETY: the lock was initialised in DriverEntry.
    let irql = unsafe { KeAcquireSpinLockRaiseToDpc(&mut st.lock) };
    let r = f(&mut st.engine);
    // SAFETY: paired with the acquire above.
    unsafe { KeReleaseSpinLock(&mut st.lock, irql) };
    r
}

fn now(st: &DriverState) -> u64 {
    let mut t: i64 = 0;
    if let Some(f) = st.now_fn {
        // SAFETY: KeQuerySystemTime(Precise) writes one LARGE_INTEGER.
        unsafe { f(&mut t) };
    }
    t as u64
}

unsafe fn pool_alloc(bytes: usize) -> *mut c_void {
    // SAFETY: plain non-paged allocation; zeroed so every all-integer record is valid.
    unsafe {
        let p = ExAllocatePoolWithTag(NON_PAGED_POOL_NX, bytes, POOL_TAG);
        if !p.is_null() {
            memset(p, 0, bytes);
        }
        p
    }
}

unsafe fn pool_free(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: allocated by pool_alloc with the same tag.
        unsafe { ExFreePoolWithTag(p, POOL_TAG) };
    }
}

pub unsafe fn map_mdl(mdl: &MDL) -> *const u8 {
    // SAFETY: the MDL describes locked pages (NDIS rule for network data).
    unsafe {
        MmMapLockedPagesSpecifyCache(
            mdl,
            0,
            MM_CACHED,
            null_mut(),
            0,
            NORMAL_PAGE_PRIORITY_NO_EXECUTE,
        ) as *const u8
    }
}

fn ustr(s: &'static [u16]) -> UNICODE_STRING {
    let len = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    UNICODE_STRING {
        Length: (len * 2) as u16,
        MaximumLength: (s.len() * 2) as u16,
        Buffer: s.as_ptr(),
    }
}

static DEVICE_NAME: [u16; abi::DEVICE_NAME.len() + 1] = abi::ascii_to_utf16(abi::DEVICE_NAME);
static DOS_NAME: [u16; abi::DOS_DEVICE_NAME.len() + 1] = abi::ascii_to_utf16(abi::DOS_DEVICE_NAME);

// ---- entry and unload ---------------------------------------------------------------

#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the I/O manager passes a valid driver object.
    unsafe {
        let st = pool_alloc(size_of::<DriverState>()) as *mut DriverState;
        if st.is_null() {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let ring_mem = pool_alloc(RING_CAPACITY * EVENT_RECORD_SIZE);
        let asm_mem = pool_alloc(ASSEMBLER_SLOTS * size_of::<HelloAssembler>());
        let in_use_mem = pool_alloc(ASSEMBLER_SLOTS);
        let flows_mem = pool_alloc(MAX_FLOWS * size_of::<*mut Flow>());
        if ring_mem.is_null() || asm_mem.is_null() || in_use_mem.is_null() || flows_mem.is_null() {
            for p in [ring_mem, asm_mem, in_use_mem, flows_mem, st as *mut c_void] {
                pool_free(p);
            }
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let asms = asm_mem as *mut HelloAssembler;
        for i in 0..ASSEMBLER_SLOTS {
            ptr::copy_nonoverlapping(&ASSEMBLER_TEMPLATE, asms.add(i), 1);
        }
        let ring = Ring::new(core::slice::from_raw_parts_mut(
            ring_mem as *mut EventRecord,
            RING_CAPACITY,
        ));
        let pool = AssemblerPool::new(
            core::slice::from_raw_parts_mut(asms, ASSEMBLER_SLOTS),
            core::slice::from_raw_parts_mut(in_use_mem as *mut bool, ASSEMBLER_SLOTS),
        );
        let flows = core::slice::from_raw_parts_mut(flows_mem as *mut *mut Flow, MAX_FLOWS);
        ptr::write(
            st,
            DriverState {
                lock: 0,
                engine: Engine::new(ring, pool, flows),
                device: null_mut(),
                wfp: null_mut(),
                callout_ids: [0; 8],
                mgmt_callout_ids: [0; 8],
                filter_ids: [0; 8],
                now_fn: resolve_clock(),
                ring_mem,
                asm_mem,
                in_use_mem,
                flows_mem,
                symlink_created: false,
            },
        );
        // KSPIN_LOCK on x64 is an integer initialised to 0 (KeInitializeSpinLock is inline).
        (*st).lock = 0;
        let s = &mut *st;

        let name = ustr(&DEVICE_NAME);
        let status = IoCreateDevice(
            driver,
            0,
            &name,
            abi::FILE_DEVICE_TOKTRA,
            FILE_DEVICE_SECURE_OPEN,
            0,
            &mut s.device,
        );
        if !nt_success(status) {
            free_state(st);
            return status;
        }
        let status = restrict_device(s.device);
        if !nt_success(status) {
            IoDeleteDevice(s.device);
            free_state(st);
            return status;
        }
        let link = ustr(&DOS_NAME);
        let status = IoCreateSymbolicLink(&link, &name);
        if !nt_success(status) {
            IoDeleteDevice(s.device);
            free_state(st);
            return status;
        }
        s.symlink_created = true;
        (*driver).MajorFunction[IRP_MJ_CREATE] = Some(dispatch_create_close);
        (*driver).MajorFunction[IRP_MJ_CLOSE] = Some(dispatch_create_close);
        (*driver).MajorFunction[IRP_MJ_DEVICE_CONTROL] = Some(dispatch_device_control);
        (*driver).DriverUnload = Some(DriverUnload);
        STATE.store(st, Ordering::Release);

        let status = register_wfp(s);
        if !nt_success(status) {
            teardown(s);
            STATE.store(null_mut(), Ordering::Release);
            free_state(st);
            return status;
        }
        STATUS_SUCCESS
    }
}

unsafe extern "system" fn DriverUnload(_driver: *mut DRIVER_OBJECT) {
    let p = STATE.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: p is our state; unload runs once, after the last IRP.
    unsafe {
        teardown(&mut *p);
        STATE.store(null_mut(), Ordering::Release);
        free_state(p);
    }
}

/// KeQuerySystemTimePrecise where the kernel has it (Windows 8+), else
/// KeQuerySystemTime (exported on older kernels and by Wine; on x64 Windows it is a
/// header macro over KUSER_SHARED_DATA, which is why neither is imported statically).
fn resolve_clock() -> Option<unsafe extern "system" fn(*mut i64)> {
    static PRECISE: [u16; 25] = abi::ascii_to_utf16("KeQuerySystemTimePrecise");
    static PLAIN: [u16; 18] = abi::ascii_to_utf16("KeQuerySystemTime");
    for name in [&PRECISE[..], &PLAIN[..]] {
        let u = ustr(name);
        // SAFETY: looks up an export by name; returns null if absent.
        let p = unsafe { MmGetSystemRoutineAddress(&u) };
        if !p.is_null() {
            // SAFETY: both routines take a PLARGE_INTEGER.
            return Some(unsafe {
                core::mem::transmute::<*mut c_void, unsafe extern "system" fn(*mut i64)>(p)
            });
        }
    }
    None
}

/// Sets the device's DACL to SYSTEM and Administrators, full access (the SDDL
/// `D:P(A;;GA;;;SY)(A;;GA;;;BA)`); everyone else is denied. Done after creation
/// because IoCreateDeviceSecure lives in the WDK's static wdmsec.lib, not in mingw,
/// and is not a kernel export.
unsafe fn restrict_device(device: *mut c_void) -> NTSTATUS {
    static SYSTEM_SID: [u8; 12] = [1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0];
    static ADMINS_SID: [u8; 16] = [1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0];
    // SECURITY_DESCRIPTOR (40 bytes on x64) and an ACL with two ACEs; kept in pool for
    // the call only (the object manager copies it).
    const SD_LEN: usize = 64;
    const ACL_LEN: usize = 8 + 2 * (8 + 16);
    // SAFETY: buffers are ours and large enough for what the Rtl routines write.
    unsafe {
        let mem = pool_alloc(SD_LEN + ACL_LEN);
        if mem.is_null() {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let sd = mem;
        let acl = (mem as *mut u8).add(SD_LEN) as *mut c_void;
        let mut status = RtlCreateSecurityDescriptor(sd, SECURITY_DESCRIPTOR_REVISION);
        if nt_success(status) {
            status = RtlCreateAcl(acl, ACL_LEN as u32, ACL_REVISION);
        }
        if nt_success(status) {
            status = RtlAddAccessAllowedAce(acl, ACL_REVISION, GENERIC_ALL, SYSTEM_SID.as_ptr());
        }
        if nt_success(status) {
            status = RtlAddAccessAllowedAce(acl, ACL_REVISION, GENERIC_ALL, ADMINS_SID.as_ptr());
        }
        if nt_success(status) {
            status = RtlSetDaclSecurityDescriptor(sd, 1, acl, 0);
        }
        if nt_success(status) {
            // A kernel handle with WRITE_DAC to our own device, then the documented
            // ZwSetSecurityObject (ObSetSecurityObjectByPointer is not implemented by
            // Wine, and the two-step route works on both).
            let mut h: *mut c_void = null_mut();
            status = ObOpenObjectByPointer(
                device,
                OBJ_KERNEL_HANDLE,
                null_mut(),
                WRITE_DAC,
                null_mut(),
                0,
                &mut h,
            );
            if nt_success(status) {
                status = ZwSetSecurityObject(h, DACL_SECURITY_INFORMATION, sd);
                ZwClose(h);
            }
        }
        pool_free(mem);
        status
    }
}

unsafe fn free_state(st: *mut DriverState) {
    // SAFETY: every pointer was allocated by pool_alloc (or is null).
    unsafe {
        let s = &*st;
        for p in [s.ring_mem, s.asm_mem, s.in_use_mem, s.flows_mem] {
            pool_free(p);
        }
        pool_free(st as *mut c_void);
    }
}

// ---- WFP registration ----------------------------------------------------------------

unsafe fn register_wfp(s: &mut DriverState) -> NTSTATUS {
    // SAFETY: all structures live for the duration of each call; the engine copies.
    unsafe {
        let mut session: FWPM_SESSION0 = zeroed();
        session.flags = FWPM_SESSION_FLAG_DYNAMIC;
        let status = FwpmEngineOpen0(null(), RPC_C_AUTHN_WINNT, null(), &session, &mut s.wfp);
        if !nt_success(status) {
            s.wfp = null_mut();
            return status;
        }
        for (i, spec) in CALLOUTS.iter().enumerate() {
            let (classify, flow_delete): (
                FWPS_CALLOUT_CLASSIFY_FN1,
                Option<FWPS_CALLOUT_FLOW_DELETE_NOTIFY_FN0>,
            ) = match spec.role {
                Role::Connect => (classify_connect, None),
                Role::Established => (classify_established, None),
                Role::Stream => (classify_stream, Some(flow_delete)),
                Role::Datagram => (classify_datagram, Some(flow_delete)),
            };
            let flags = match spec.role {
                Role::Stream | Role::Datagram => FWP_CALLOUT_FLAG_CONDITIONAL_ON_FLOW,
                _ => 0,
            };
            let callout = FWPS_CALLOUT1 {
                calloutKey: spec.key,
                flags,
                classifyFn: classify,
                notifyFn: notify,
                flowDeleteFn: flow_delete,
            };
            let status = FwpsCalloutRegister1(s.device, &callout, &mut s.callout_ids[i]);
            if !nt_success(status) {
                return status;
            }
        }
        let status = FwpmTransactionBegin0(s.wfp, 0);
        if !nt_success(status) {
            return status;
        }
        let status = add_objects(s);
        if !nt_success(status) {
            FwpmTransactionAbort0(s.wfp);
            s.filter_ids = [0; 8];
            s.mgmt_callout_ids = [0; 8];
            return status;
        }
        FwpmTransactionCommit0(s.wfp)
    }
}

unsafe fn add_objects(s: &mut DriverState) -> NTSTATUS {
    // SAFETY: see register_wfp.
    unsafe {
        let provider = FWPM_PROVIDER0 {
            providerKey: PROVIDER_KEY,
            displayData: FWPM_DISPLAY_DATA0 {
                name: w!("Toktra").as_ptr(),
                description: w!("Toktra connection metadata (inspection only)").as_ptr(),
            },
            flags: 0,
            providerData: FWP_BYTE_BLOB {
                size: 0,
                data: null(),
            },
            serviceName: w!("ToktraWFP").as_ptr(),
        };
        let status = FwpmProviderAdd0(s.wfp, &provider, null());
        if !nt_success(status) {
            return status;
        }
        let sublayer = FWPM_SUBLAYER0 {
            subLayerKey: SUBLAYER_KEY,
            displayData: FWPM_DISPLAY_DATA0 {
                name: w!("Toktra inspection").as_ptr(),
                description: w!("Inspection callouts; never decide").as_ptr(),
            },
            flags: 0,
            providerKey: &PROVIDER_KEY,
            providerData: FWP_BYTE_BLOB {
                size: 0,
                data: null(),
            },
            weight: 1,
        };
        let status = FwpmSubLayerAdd0(s.wfp, &sublayer, null());
        if !nt_success(status) {
            return status;
        }
        let port = [FWPM_FILTER_CONDITION0 {
            fieldKey: FWPM_CONDITION_IP_REMOTE_PORT,
            matchType: FWP_MATCH_EQUAL,
            conditionValue: FWP_VALUE0::uint16(INSPECTED_REMOTE_PORT),
        }];
        for (i, spec) in CALLOUTS.iter().enumerate() {
            let callout = FWPM_CALLOUT0 {
                calloutKey: spec.key,
                displayData: FWPM_DISPLAY_DATA0 {
                    name: spec.name.as_ptr(),
                    description: null(),
                },
                flags: 0,
                providerKey: &PROVIDER_KEY,
                providerData: FWP_BYTE_BLOB {
                    size: 0,
                    data: null(),
                },
                applicableLayer: spec.layer,
                calloutId: 0,
            };
            let status = FwpmCalloutAdd0(s.wfp, &callout, null(), &mut s.mgmt_callout_ids[i]);
            if !nt_success(status) {
                return status;
            }
            // ALE filters match remote port 443; the stream and datagram callouts only
            // run for flows that carry our context, so their filters need no condition.
            let conditions: &[FWPM_FILTER_CONDITION0] = match spec.role {
                Role::Connect | Role::Established => &port,
                Role::Stream | Role::Datagram => &[],
            };
            let filter = FWPM_FILTER0 {
                filterKey: GUID::from_u128(0),
                displayData: FWPM_DISPLAY_DATA0 {
                    name: spec.name.as_ptr(),
                    description: null(),
                },
                flags: 0,
                providerKey: &PROVIDER_KEY,
                providerData: FWP_BYTE_BLOB {
                    size: 0,
                    data: null(),
                },
                layerKey: spec.layer,
                subLayerKey: SUBLAYER_KEY,
                weight: FWP_VALUE0::EMPTY,
                numFilterConditions: conditions.len() as u32,
                filterCondition: if conditions.is_empty() {
                    null()
                } else {
                    conditions.as_ptr()
                },
                action: FWPM_ACTION0 {
                    type_: FWP_ACTION_CALLOUT_INSPECTION,
                    calloutKey: spec.key,
                },
                providerContext: [0; 2],
                reserved: null(),
                filterId: 0,
                effectiveWeight: FWP_VALUE0::EMPTY,
            };
            let status = FwpmFilterAdd0(s.wfp, &filter, null(), &mut s.filter_ids[i]);
            if !nt_success(status) {
                return status;
            }
        }
        STATUS_SUCCESS
    }
}

/// Removes every context (each removal runs flow_delete, which writes the flow's final
/// record and frees it), then filters, callouts, sublayer, provider, the engine
/// handle, the link and the device.
unsafe fn teardown(s: &mut DriverState) {
    // SAFETY: called once, from DriverUnload or a failed DriverEntry.
    unsafe {
        for _ in 0..MAX_FLOWS {
            let next = with_engine(s, |e| {
                e.flows
                    .iter()
                    .find(|f| !f.is_null() && !(***f).removing)
                    .map(|&f| {
                        let fl = &mut *f;
                        fl.removing = true;
                        (f, fl.flow_id, fl.layer_id, fl.callout_id)
                    })
            });
            let Some((f, id, layer, callout)) = next else {
                break;
            };
            // Success runs flow_delete now; STATUS_PENDING runs it once the flow's
            // in-flight classify returns. Any other status: the engine no longer knows
            // the flow, so its final record is written here.
            let status = FwpsFlowRemoveContext0(id, layer, callout);
            if !nt_success(status) {
                let t = now(s);
                let was_live = with_engine(s, |e| {
                    if e.flows.contains(&f) {
                        e.on_flow_delete(&mut *f, t);
                        true
                    } else {
                        false
                    }
                });
                if was_live {
                    pool_free(f as *mut c_void);
                }
            }
        }
        if !s.wfp.is_null() {
            for id in s.filter_ids {
                if id != 0 {
                    FwpmFilterDeleteById0(s.wfp, id);
                }
            }
            for id in s.mgmt_callout_ids {
                if id != 0 {
                    FwpmCalloutDeleteById0(s.wfp, id);
                }
            }
            FwpmSubLayerDeleteByKey0(s.wfp, &SUBLAYER_KEY);
            FwpmProviderDeleteByKey0(s.wfp, &PROVIDER_KEY);
        }
        for id in s.callout_ids {
            if id != 0 {
                FwpsCalloutUnregisterById0(id);
            }
        }
        if !s.wfp.is_null() {
            FwpmEngineClose0(s.wfp);
            s.wfp = null_mut();
        }
        if s.symlink_created {
            let link = ustr(&DOS_NAME);
            IoDeleteSymbolicLink(&link);
            s.symlink_created = false;
        }
        if !s.device.is_null() {
            IoDeleteDevice(s.device);
            s.device = null_mut();
        }
    }
}

// ---- classify functions -------------------------------------------------------------

/// The only thing an inspection callout may say: no opinion. Only written when the
/// callout holds the write right; the right itself is never cleared.
unsafe fn continue_(out: *mut FWPS_CLASSIFY_OUT0) {
    // SAFETY: the engine's classifyOut.
    unsafe {
        if let Some(o) = out.as_mut()
            && o.rights & FWPS_RIGHT_ACTION_WRITE != 0
        {
            o.actionType = FWP_ACTION_CONTINUE;
        }
    }
}

unsafe extern "system" fn notify(_t: u32, _key: *const GUID, _filter: *mut c_void) -> NTSTATUS {
    STATUS_SUCCESS
}

/// Walks a datagram's payload: the first NET_BUFFER of `nbl`, past the transport
/// header on outbound paths (where the data offset sits at the UDP header).
unsafe fn datagram_view(
    nbl: *const NET_BUFFER_LIST,
    md: Option<&FWPS_INCOMING_METADATA_VALUES0_PREFIX>,
    outbound: bool,
) -> Option<(*const NET_BUFFER, usize, usize, u8)> {
    if nbl.is_null() {
        return None;
    }
    // SAFETY: engine-provided NBL.
    unsafe {
        let nb = (*nbl).FirstNetBuffer;
        if nb.is_null() {
            return None;
        }
        let skip = match md {
            Some(m)
                if outbound
                    && m.currentMetadataValues & FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE != 0 =>
            {
                m.transportHeaderSize as usize
            }
            _ => 0,
        };
        let total = ((*nb).DataLength & 0xFFFF_FFFF).checked_sub(skip)?;
        let mut first = 0u8;
        nbl::walk_net_buffer(nb, skip, 1, &mut |p: &[u8]| {
            if let Some(&b) = p.first() {
                first = b;
            }
        });
        Some((nb, skip, total, first))
    }
}

unsafe extern "system" fn classify_connect(
    values: *const FWPS_INCOMING_VALUES0,
    meta: *const FWPS_INCOMING_METADATA_VALUES0_PREFIX,
    layer_data: *mut c_void,
    _ctx: *const c_void,
    _filter: *const c_void,
    _flow_ctx: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: engine-provided arguments of one classify call.
    unsafe {
        if let (Some(st), Some(values)) = (state(), values.as_ref()) {
            let md = meta.as_ref();
            let m = flow::meta_from_ale(values, md, None);
            let t = now(st);
            let dg = if m.ip_protocol == 17 {
                datagram_view(layer_data as *const NET_BUFFER_LIST, md, true)
            } else {
                None
            };
            with_engine(st, |e| {
                e.counters.classify_calls += 1;
                match dg {
                    Some((nb, skip, total, first)) => {
                        let mut walk = |f: &mut dyn FnMut(&[u8])| {
                            nbl::walk_net_buffer(nb, skip, abi::PAYLOAD_CAP, &mut |p: &[u8]| f(p))
                        };
                        e.on_connect(&m, t, Some((&mut walk, total, first)));
                    }
                    None => e.on_connect(&m, t, None),
                }
            });
        }
        continue_(out);
    }
}

unsafe extern "system" fn classify_established(
    values: *const FWPS_INCOMING_VALUES0,
    meta: *const FWPS_INCOMING_METADATA_VALUES0_PREFIX,
    _layer_data: *mut c_void,
    _ctx: *const c_void,
    _filter: *const c_void,
    _flow_ctx: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: engine-provided arguments of one classify call.
    unsafe {
        if let (Some(st), Some(values), Some(md)) = (state(), values.as_ref(), meta.as_ref()) {
            establish(st, values, md);
        }
        continue_(out);
    }
}

unsafe fn establish(
    st: &mut DriverState,
    values: &FWPS_INCOMING_VALUES0,
    md: &FWPS_INCOMING_METADATA_VALUES0_PREFIX,
) {
    if md.currentMetadataValues & FWPS_METADATA_FIELD_FLOW_HANDLE == 0 {
        return;
    }
    // SAFETY: engine-provided values.
    let m: FlowMeta = unsafe {
        flow::meta_from_ale(
            values,
            Some(md),
            Some(FWPS_FIELD_ALE_FLOW_ESTABLISHED_DIRECTION),
        )
    };
    let v6 = values.layerId == FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6;
    let target = match (m.ip_protocol, v6) {
        (6, false) => STREAM_V4,
        (6, true) => STREAM_V6,
        (17, false) => DATAGRAM_V4,
        (17, true) => DATAGRAM_V6,
        _ => return,
    };
    let layer = match target {
        STREAM_V4 => FWPS_LAYER_STREAM_V4,
        STREAM_V6 => FWPS_LAYER_STREAM_V6,
        DATAGRAM_V4 => FWPS_LAYER_DATAGRAM_DATA_V4,
        _ => FWPS_LAYER_DATAGRAM_DATA_V6,
    };
    let callout_id = st.callout_ids[target];
    let t = now(st);
    // SAFETY: pool allocation sized for one Flow, written before use.
    unsafe {
        let f = pool_alloc(size_of::<Flow>()) as *mut Flow;
        if f.is_null() {
            with_engine(st, |e| {
                e.counters.alloc_failures += 1;
                e.counters.flows_dropped_cap += 1;
            });
            return;
        }
        ptr::write(f, Flow::new(md.flowHandle, layer, callout_id, t, &m));
        let admitted = with_engine(st, |e| {
            e.counters.classify_calls += 1;
            e.admit_flow(f)
        });
        if !admitted {
            pool_free(f as *mut c_void);
            return;
        }
        let status = FwpsFlowAssociateContext0(md.flowHandle, layer, callout_id, f as u64);
        if !nt_success(status) {
            with_engine(st, |e| e.forget_flow(&mut *f));
            pool_free(f as *mut c_void);
        }
    }
}

unsafe extern "system" fn classify_stream(
    _values: *const FWPS_INCOMING_VALUES0,
    _meta: *const FWPS_INCOMING_METADATA_VALUES0_PREFIX,
    layer_data: *mut c_void,
    _ctx: *const c_void,
    _filter: *const c_void,
    flow_ctx: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: engine-provided arguments; flow_ctx is a Flow we associated.
    unsafe {
        let io = layer_data as *const FWPS_STREAM_CALLOUT_IO_PACKET0;
        if let (Some(st), Some(io), Some(flow)) =
            (state(), io.as_ref(), (flow_ctx as *mut Flow).as_mut())
            && let Some(sd) = io.streamData.as_ref()
        {
            let outbound = sd.flags & FWPS_STREAM_FLAG_SEND != 0;
            let inbound = sd.flags & FWPS_STREAM_FLAG_RECEIVE != 0;
            if outbound || inbound {
                let t = now(st);
                let off = &sd.dataOffset;
                let mut walk = |f: &mut dyn FnMut(&[u8])| {
                    nbl::walk_stream(
                        off.netBufferList,
                        off.netBuffer,
                        off.mdl,
                        off.mdlOffset as usize,
                        sd.dataLength,
                        &mut |p: &[u8]| f(p),
                    )
                };
                with_engine(st, |e| {
                    e.counters.classify_calls += 1;
                    e.on_stream(flow, outbound, t, &mut walk, sd.dataLength);
                });
            }
        }
        continue_(out);
    }
}

unsafe extern "system" fn classify_datagram(
    values: *const FWPS_INCOMING_VALUES0,
    meta: *const FWPS_INCOMING_METADATA_VALUES0_PREFIX,
    layer_data: *mut c_void,
    _ctx: *const c_void,
    _filter: *const c_void,
    flow_ctx: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: engine-provided arguments; flow_ctx is a Flow we associated.
    unsafe {
        if let (Some(st), Some(values), Some(flow)) =
            (state(), values.as_ref(), (flow_ctx as *mut Flow).as_mut())
        {
            let dir = flow::incoming_value(values, FWPS_FIELD_DATAGRAM_DATA_DIRECTION);
            let outbound = !matches!(dir, Some(v) if v.type_ == FWP_UINT32 && v.value as u32 == FWP_DIRECTION_INBOUND);
            if let Some((nb, skip, total, first)) = datagram_view(
                layer_data as *const NET_BUFFER_LIST,
                meta.as_ref(),
                outbound,
            ) {
                let t = now(st);
                let mut walk = |f: &mut dyn FnMut(&[u8])| {
                    nbl::walk_net_buffer(nb, skip, abi::PAYLOAD_CAP, &mut |p: &[u8]| f(p))
                };
                with_engine(st, |e| {
                    e.counters.classify_calls += 1;
                    e.on_datagram(flow, outbound, t, &mut walk, total, first);
                });
            }
        }
        continue_(out);
    }
}

unsafe extern "system" fn flow_delete(_layer: u16, _callout: u32, flow_ctx: u64) {
    let f = flow_ctx as *mut Flow;
    let Some(st) = state() else { return };
    if f.is_null() {
        return;
    }
    let t = now(st);
    // SAFETY: the engine hands back the context we associated, exactly once.
    unsafe {
        with_engine(st, |e| e.on_flow_delete(&mut *f, t));
        pool_free(f as *mut c_void);
    }
}

// ---- the control device -------------------------------------------------------------

unsafe fn complete(irp: *mut IRP, status: NTSTATUS, info: usize) -> NTSTATUS {
    // SAFETY: the I/O manager's IRP.
    unsafe {
        (*irp).IoStatus_Status = status as isize;
        (*irp).IoStatus_Information = info;
        IofCompleteRequest(irp, 0);
    }
    status
}

unsafe extern "system" fn dispatch_create_close(_dev: *mut c_void, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the I/O manager's IRP.
    unsafe { complete(irp, STATUS_SUCCESS, 0) }
}

unsafe extern "system" fn dispatch_device_control(_dev: *mut c_void, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: METHOD_BUFFERED: SystemBuffer holds max(in, out) bytes owned by the IRP.
    unsafe {
        let Some(st) = state() else {
            return complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0);
        };
        let Some(io) = (*irp).CurrentStackLocation.as_ref() else {
            return complete(irp, STATUS_INVALID_PARAMETER, 0);
        };
        let out_len = io.OutputBufferLength as usize;
        let buf = (*irp).SystemBuffer as *mut u8;
        if buf.is_null() && out_len > 0 {
            return complete(irp, STATUS_INVALID_PARAMETER, 0);
        }
        match io.IoControlCode {
            abi::IOCTL_TOKTRA_READ_EVENTS => {
                if out_len < EVENT_RECORD_SIZE {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                let out = core::slice::from_raw_parts_mut(buf, out_len);
                let n = with_engine(st, |e| e.drain_into(out));
                complete(irp, STATUS_SUCCESS, n)
            }
            abi::IOCTL_TOKTRA_GET_COUNTERS => {
                if out_len < abi::COUNTERS_SIZE {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                let c = with_engine(st, |e| e.snapshot());
                ptr::copy_nonoverlapping(c.as_bytes().as_ptr(), buf, abi::COUNTERS_SIZE);
                complete(irp, STATUS_SUCCESS, abi::COUNTERS_SIZE)
            }
            abi::IOCTL_TOKTRA_GET_VERSION => {
                if out_len < abi::VERSION_INFO_SIZE {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                let v = VersionInfo {
                    abi_version: abi::ABI_VERSION,
                    event_record_size: EVENT_RECORD_SIZE as u32,
                    driver_major: abi::DRIVER_VERSION.0,
                    driver_minor: abi::DRIVER_VERSION.1,
                    driver_patch: abi::DRIVER_VERSION.2,
                    _reserved: 0,
                    ring_capacity: RING_CAPACITY as u32,
                    hello_cap: toktra_wire::assembler::MAX_HELLO_LEN as u32,
                };
                ptr::copy_nonoverlapping(v.as_bytes().as_ptr(), buf, abi::VERSION_INFO_SIZE);
                complete(irp, STATUS_SUCCESS, abi::VERSION_INFO_SIZE)
            }
            _ => complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0),
        }
    }
}
