//! Reading bytes out of NET_BUFFER_LIST / NET_BUFFER / MDL chains without copying
//! them, and without trusting them: every length is bounded by the declared data
//! length, every pointer is checked for null, and a chain that does not add up ends
//! the walk (counted by the caller as a malformed indication) instead of faulting.

use crate::wfp::{
    MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL, NET_BUFFER, NET_BUFFER_LIST,
};

/// Longest MDL chain followed within one NET_BUFFER; real chains have a handful.
const MAX_MDLS: usize = 64;
/// Longest NET_BUFFER / NET_BUFFER_LIST chain followed.
const MAX_BUFFERS: usize = 256;

/// Maps an MDL's buffer. Data from the network stack is mapped already; otherwise
/// the kernel's mapping routine is asked (never under the test host).
///
/// # Safety
/// `mdl` must point to a valid MDL.
unsafe fn mdl_va(mdl: &MDL) -> *const u8 {
    if mdl.MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
        return mdl.MappedSystemVa;
    }
    #[cfg(all(target_os = "windows", not(test)))]
    {
        // SAFETY: the MDL is valid (caller) and describes locked pages (NDIS rule).
        unsafe { crate::kernel::map_mdl(mdl) }
    }
    #[cfg(not(all(target_os = "windows", not(test))))]
    {
        core::ptr::null()
    }
}

/// Calls `f` with each contiguous piece of the `len` bytes that start at `offset`
/// bytes into `mdl`, following `Next`. Returns the bytes delivered.
///
/// # Safety
/// `mdl` is null or a valid MDL chain whose mapped buffers are readable.
unsafe fn walk_mdls(
    mut mdl: *const MDL,
    mut offset: usize,
    len: usize,
    f: &mut impl FnMut(&[u8]),
) -> usize {
    let mut left = len;
    let mut hops = 0;
    while left > 0 && !mdl.is_null() && hops < MAX_MDLS {
        hops += 1;
        // SAFETY: non-null, valid per the caller.
        let m = unsafe { &*mdl };
        let count = m.ByteCount as usize;
        if offset < count {
            let take = (count - offset).min(left);
            // SAFETY: valid MDL.
            let va = unsafe { mdl_va(m) };
            if va.is_null() {
                break;
            }
            // SAFETY: the MDL maps `count` readable bytes at `va`; offset+take <= count.
            let piece = unsafe { core::slice::from_raw_parts(va.add(offset), take) };
            f(piece);
            left -= take;
            offset = 0;
        } else {
            offset -= count;
        }
        mdl = m.Next;
    }
    len - left
}

/// Walks one NET_BUFFER's data (from CurrentMdl + CurrentMdlOffset, DataLength bytes),
/// skipping `skip` leading bytes, delivering at most `max` bytes. Returns the bytes
/// delivered.
///
/// # Safety
/// `nb` must point to a valid NET_BUFFER.
pub unsafe fn walk_net_buffer(
    nb: *const NET_BUFFER,
    skip: usize,
    max: usize,
    f: &mut impl FnMut(&[u8]),
) -> usize {
    if nb.is_null() {
        return 0;
    }
    // SAFETY: non-null, valid per the caller.
    let nb = unsafe { &*nb };
    let data_len = nb.DataLength & 0xFFFF_FFFF;
    let Some(avail) = data_len.checked_sub(skip) else {
        return 0;
    };
    let start = (nb.CurrentMdlOffset as usize).saturating_add(skip);
    // SAFETY: the NET_BUFFER's MDL chain is valid.
    unsafe { walk_mdls(nb.CurrentMdl, start, avail.min(max), f) }
}

/// Walks `len` bytes of stream data starting at (`nbl`, `nb`, `mdl`, `mdl_offset`),
/// continuing through the rest of that NET_BUFFER, the following NET_BUFFERs and the
/// following NET_BUFFER_LISTs — the shape of FWPS_STREAM_DATA0. Returns the bytes
/// delivered; fewer than `len` means the chain was shorter than declared.
///
/// # Safety
/// The pointers are null or point into one valid NBL chain.
pub unsafe fn walk_stream(
    nbl: *const NET_BUFFER_LIST,
    nb: *const NET_BUFFER,
    mdl: *const MDL,
    mdl_offset: usize,
    len: usize,
    f: &mut impl FnMut(&[u8]),
) -> usize {
    if nb.is_null() || len == 0 {
        return 0;
    }
    // Bytes of the first NET_BUFFER before the start position.
    // SAFETY: valid per the caller.
    let first = unsafe { &*nb };
    let mut before = 0usize;
    let mut m = first.CurrentMdl;
    let mut off = first.CurrentMdlOffset as usize;
    let mut hops = 0;
    while m != mdl {
        if m.is_null() || hops >= MAX_MDLS {
            return 0;
        }
        hops += 1;
        // SAFETY: non-null MDL of a valid chain.
        let mm = unsafe { &*m };
        before = before.saturating_add((mm.ByteCount as usize).saturating_sub(off));
        off = 0;
        m = mm.Next;
    }
    before = before.saturating_add(mdl_offset.saturating_sub(off));
    let in_first = (first.DataLength & 0xFFFF_FFFF).saturating_sub(before);
    // SAFETY: valid chain.
    let mut done = unsafe { walk_mdls(mdl, mdl_offset, in_first.min(len), f) };
    if done < in_first.min(len) {
        return done;
    }
    let mut cur_nbl = nbl;
    let mut cur_nb = first.Next;
    let mut guard = 0;
    while done < len && guard < MAX_BUFFERS {
        guard += 1;
        if cur_nb.is_null() {
            if cur_nbl.is_null() {
                break;
            }
            // SAFETY: non-null NBL of a valid chain.
            cur_nbl = unsafe { (*cur_nbl).Next };
            if cur_nbl.is_null() {
                break;
            }
            // SAFETY: as above.
            cur_nb = unsafe { (*cur_nbl).FirstNetBuffer };
            continue;
        }
        // SAFETY: non-null NB of a valid chain.
        let got = unsafe { walk_net_buffer(cur_nb, 0, len - done, f) };
        done += got;
        // SAFETY: as above.
        cur_nb = unsafe { (*cur_nb).Next };
    }
    done
}

#[cfg(test)]
pub mod tests {
    //! Builds real NBL/NB/MDL chains in memory (as NDIS would) to test the walkers.
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    pub struct Chain {
        pub nbls: Vec<Box<NET_BUFFER_LIST>>,
        pub nbs: Vec<Box<NET_BUFFER>>,
        pub mdls: Vec<Box<MDL>>,
        pub bufs: Vec<Vec<u8>>,
    }

    fn mdl(buf: &[u8]) -> Box<MDL> {
        Box::new(MDL {
            Next: core::ptr::null(),
            Size: 48,
            MdlFlags: MDL_SOURCE_IS_NONPAGED_POOL,
            Process: core::ptr::null(),
            MappedSystemVa: buf.as_ptr(),
            StartVa: buf.as_ptr(),
            ByteCount: buf.len() as u32,
            ByteOffset: 0,
        })
    }

    /// One NBL per entry of `nbls`, one NB per inner entry, one MDL per innermost
    /// slice; each NB starts `lead` bytes into its first MDL (junk before the data).
    pub fn build(nbls: &[&[&[&[u8]]]], lead: usize) -> Chain {
        let mut c = Chain {
            nbls: Vec::new(),
            nbs: Vec::new(),
            mdls: Vec::new(),
            bufs: Vec::new(),
        };
        let mut nbl_ptrs = Vec::new();
        for nbs in nbls {
            let mut nb_ptrs: Vec<*const NET_BUFFER> = Vec::new();
            for mdls in nbs.iter() {
                let mut first: *const MDL = core::ptr::null();
                let mut prev: Option<*mut MDL> = None;
                let mut total = 0usize;
                for (i, piece) in mdls.iter().enumerate() {
                    let mut buf = Vec::new();
                    if i == 0 {
                        buf.extend(std::iter::repeat_n(0xEEu8, lead));
                    }
                    buf.extend_from_slice(piece);
                    total += piece.len();
                    let mut m = mdl(&buf);
                    c.bufs.push(buf);
                    let p: *mut MDL = &mut *m;
                    if let Some(pr) = prev {
                        // SAFETY: test-owned boxes.
                        unsafe { (*pr).Next = p };
                    } else {
                        first = p;
                    }
                    prev = Some(p);
                    c.mdls.push(m);
                }
                let nb = Box::new(NET_BUFFER {
                    Next: core::ptr::null(),
                    CurrentMdl: first,
                    CurrentMdlOffset: lead as u32,
                    DataLength: total,
                    MdlChain: first,
                    DataOffset: lead as u32,
                });
                nb_ptrs.push(&*nb);
                c.nbs.push(nb);
            }
            for w in nb_ptrs.windows(2) {
                // SAFETY: test-owned boxes.
                unsafe { (*(w[0] as *mut NET_BUFFER)).Next = w[1] };
            }
            let nbl = Box::new(NET_BUFFER_LIST {
                Next: core::ptr::null(),
                FirstNetBuffer: nb_ptrs.first().copied().unwrap_or(core::ptr::null()),
            });
            nbl_ptrs.push(&*nbl as *const NET_BUFFER_LIST);
            c.nbls.push(nbl);
        }
        for w in nbl_ptrs.windows(2) {
            // SAFETY: test-owned boxes.
            unsafe { (*(w[0] as *mut NET_BUFFER_LIST)).Next = w[1] };
        }
        c
    }

    #[test]
    fn walks_stream_across_mdls_buffers_and_lists() {
        let c = build(&[&[&[b"he", b"llo"], &[b" wor"]], &[&[b"ld!"]]], 3);
        let mut got = Vec::new();
        let nbl: *const NET_BUFFER_LIST = &*c.nbls[0];
        let nb: *const NET_BUFFER = &*c.nbs[0];
        // Start at the 'l' of "llo": second MDL, offset 0.
        let m: *const MDL = &*c.mdls[1];
        let n = unsafe { walk_stream(nbl, nb, m, 0, 9, &mut |p| got.extend_from_slice(p)) };
        assert_eq!(&got, b"llo world");
        assert_eq!(n, 9);
        // Start inside the first MDL, after the lead junk.
        got.clear();
        let m0: *const MDL = &*c.mdls[0];
        let n = unsafe { walk_stream(nbl, nb, m0, 4, 100, &mut |p| got.extend_from_slice(p)) };
        assert_eq!(&got, b"ello world!");
        assert_eq!(
            n, 11,
            "shorter than declared: the walk reports what it found"
        );
    }

    #[test]
    fn net_buffer_skip_and_cap() {
        let c = build(&[&[&[b"12345678", b"payload"]]], 5);
        let mut got = Vec::new();
        let n = unsafe { walk_net_buffer(&*c.nbs[0], 8, 4, &mut |p| got.extend_from_slice(p)) };
        assert_eq!(&got, b"payl");
        assert_eq!(n, 4);
        got.clear();
        let n = unsafe { walk_net_buffer(&*c.nbs[0], 99, 4, &mut |p| got.extend_from_slice(p)) };
        assert_eq!(n, 0);
    }

    #[test]
    fn inconsistent_chain_stops_instead_of_faulting() {
        let c = build(&[&[&[b"abc"]]], 0);
        let mut nb = NET_BUFFER {
            ..*Box::new(NET_BUFFER {
                Next: core::ptr::null(),
                CurrentMdl: &*c.mdls[0],
                CurrentMdlOffset: 0,
                DataLength: 1000,
                MdlChain: &*c.mdls[0],
                DataOffset: 0,
            })
        };
        nb.DataLength = 1000;
        let mut got = Vec::new();
        let n = unsafe { walk_net_buffer(&nb, 0, usize::MAX, &mut |p| got.extend_from_slice(p)) };
        assert_eq!(n, 3);
        // A start MDL that is not in the buffer's chain.
        let stray = mdl(b"zz");
        let n = unsafe { walk_stream(core::ptr::null(), &nb, &*stray, 0, 2, &mut |_| {}) };
        assert_eq!(n, 0);
    }
}
