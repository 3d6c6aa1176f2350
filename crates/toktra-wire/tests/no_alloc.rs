//! The parser, the assembler, JA4 and the QUIC path allocate nothing: counted with a
//! global allocator that tallies allocations made on this test's thread while a
//! flag is set.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{data, hex_file};
use toktra_wire::{
    ClientHello, HelloAssembler, HelloInfo, Ja4Memo, Progress, StreamKind, Transport, ja4, ja4_memo,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, COUNT.with(Cell::get))
}

#[test]
fn zero_heap_allocations() {
    let stream = data("chromium-clienthello.bin");
    let rfc = hex_file("rfc9369-a2-client-initial.hex");
    let mut asm = Box::new(HelloAssembler::new(StreamKind::Tls));
    let mut quic = Box::new(HelloAssembler::new(StreamKind::QuicCrypto));
    let mut scratch = vec![0u8; 1500];
    let mut memo = Box::new(Ja4Memo::new());

    // Make sure the counter works at all.
    let (_, n) = allocations(|| vec![1u8; 10]);
    assert_eq!(n, 1);

    let (sni, n) = allocations(|| {
        let h = ClientHello::parse(&stream[5..]).unwrap();
        let j = ja4(&h, Transport::Tcp);
        // A memo miss, then a hit.
        assert_eq!(ja4_memo(&h, Transport::Tcp, &mut memo), j);
        assert_eq!(ja4_memo(&h, Transport::Tcp, &mut memo), j);
        let info = HelloInfo::new(&h, Transport::Tcp);
        let (a, b) = stream.split_at(700);
        asm.push(700, b).unwrap();
        let done = matches!(asm.push(0, a), Ok(Progress::Complete(_)));
        #[cfg(feature = "quic")]
        let quic_done = {
            let (_, p) =
                toktra_wire::quic::feed_client_datagram(&rfc, &mut scratch, &mut quic).unwrap();
            matches!(p, Progress::Complete(_))
        };
        #[cfg(not(feature = "quic"))]
        let quic_done = {
            let _ = (&rfc, &mut scratch, &mut quic);
            true
        };
        (
            info.sni().map_or(0, <[u8]>::len),
            j.as_str().len(),
            done,
            quic_done,
        )
    });
    assert_eq!(n, 0, "heap allocations in the parser");
    assert_eq!(sni, (14, 36, true, true));
}
