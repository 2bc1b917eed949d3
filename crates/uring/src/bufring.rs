//! The provided-buffer ring: one pool of receive buffers per loop, lent to the
//! kernel up front, that every connection's recv draws from only when data
//! arrives.
//!
//! Two pieces of memory, both ours and both shared with the kernel:
//!
//! ```text
//!   ring (registered with IORING_REGISTER_PBUF_RING, group BUFFER_GROUP)
//!   ┌─────────────┬─────────────┬─────┬──────────────┐
//!   │ addr,len,id │ addr,len,id │ ... │              │   head: the kernel's, private
//!   └─────────────┴─────────────┴─────┴──────────────┘   tail: ours, in entry 0's last 2 bytes
//!         │              │
//!         ▼              ▼
//!   buffers: [ 4 KiB ][ 4 KiB ][ 4 KiB ] ...   (address space for POOL.max, reserved once)
//! ```
//!
//! The kernel takes an entry at the head when a recv with `IOSQE_BUFFER_SELECT`
//! has data to deliver, writes the bytes into that buffer and names it in the
//! completion (`IORING_CQE_F_BUFFER`, the id in the flags' upper 16 bits). We give
//! it back by writing its entry at the tail and publishing the new tail
//! ([`BufRing::recycle`]) — no syscall either way. The loop recycles each buffer
//! as soon as the completion that filled it has been handled: no connection ever
//! holds one between two loop iterations, so the pool is sized by the data that
//! arrives in one batch, not by the number of clients.
//!
//! When a batch brings more data than there are free buffers, the kernel ends
//! the multishot recv that found the ring empty with `-ENOBUFS` (the bytes stay
//! in the socket). The loop then [`BufRing::grow`]s the pool — more of the
//! address space reserved here, published as new ring entries — and re-arms that
//! recv. Nothing is lost and nobody else waits: the other connections' buffers
//! come back within the same batch.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::ring::Ring;

/// Bytes per buffer: one page. A recv touches whole pages, so a smaller buffer
/// would not make a 64-byte request cheaper, and a 16 KiB line arrives in four
/// completions instead of one.
pub(crate) const BUF_SIZE: usize = 4096;

/// The buffer group id the TCP loop's recvs name (`buf_group`); groups are per
/// ring, so every loop uses the same one.
pub(crate) const BUFFER_GROUP: u16 = 0;

/// How many buffers a loop lends the kernel at first, and at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolSize {
    /// Buffers published when the loop starts.
    pub initial: u16,
    /// The ring's entries (a power of two, at most 32,768): the pool grows up to this.
    pub max: u16,
}

/// 256 buffers (1 MiB) to start, growing on `ENOBUFS` up to 2,048 (8 MiB): as
/// many as the completion queue has entries (`ring::RING_ENTRIES * 2`). A buffer
/// is in use from the CQE that names it until we reap that CQE, and a multishot
/// recv stops when the completion queue is full, so about that many at most can
/// be in use at once. The address space for all 2,048 is reserved at the start;
/// only pages a recv has written to are resident.
pub(crate) const POOL: PoolSize = PoolSize {
    initial: 256,
    max: 2048,
};

/// A loop's registered buffer ring and the buffers its entries point at.
pub(crate) struct BufRing {
    /// `max` ring entries of 16 bytes, page-aligned as the kernel requires.
    ring: Mapping,
    /// `max` buffers of [`BUF_SIZE`]: buffer `id` is at `id * BUF_SIZE`.
    buffers: Mapping,
    /// Buffers published so far: ids `0..published`.
    published: u16,
    max: u16,
    /// Our copy of the tail: the next entry we write.
    tail: u16,
}

impl BufRing {
    /// Reserves the memory, publishes `size.initial` buffers and registers the
    /// ring with `ring` as [`BUFFER_GROUP`] (`IORING_REGISTER_PBUF_RING`, Linux
    /// 5.19). An error says why the kernel (or mmap) refused.
    pub(crate) fn register(ring: &Ring, size: PoolSize) -> io::Result<BufRing> {
        assert!(size.max.is_power_of_two() && size.initial <= size.max);
        let entries = size.max as usize;
        let mut pool = BufRing {
            ring: Mapping::new(entries * std::mem::size_of::<BufRingEntry>())?,
            buffers: Mapping::new(entries * BUF_SIZE)?,
            published: 0,
            max: size.max,
            tail: 0,
        };
        // SAFETY: both mappings live as long as this BufRing, which the loop drops
        // only after the ring (and with it the registration) is gone, and with no
        // recv in flight that could still pick a buffer.
        unsafe {
            ring.register_buf_ring(pool.ring.addr() as u64, size.max, BUFFER_GROUP)?;
        }
        pool.publish(size.initial);
        Ok(pool)
    }

    /// The `len` bytes the kernel wrote into buffer `id`.
    pub(crate) fn get(&self, id: u16, len: usize) -> &[u8] {
        assert!(
            id < self.published && len <= BUF_SIZE,
            "buffer {id}, {len} bytes"
        );
        // SAFETY: the buffer lies inside the mapping; the completion that named it
        // handed it back to us, so the kernel does not write to it until recycled.
        unsafe { std::slice::from_raw_parts(self.buffers.addr().add(id as usize * BUF_SIZE), len) }
    }

    /// Gives buffer `id` back to the kernel: writes its entry at the tail and
    /// publishes the tail (a release store the kernel reads; no syscall).
    pub(crate) fn recycle(&mut self, id: u16) {
        self.push(id);
        self.store_tail();
    }

    /// Lends the kernel more buffers after it ran out (`ENOBUFS`): doubles the
    /// pool, up to the ring's size. Returns the new count, or `None` at the top
    /// (then the loop only re-arms: buffers come back as completions are handled).
    pub(crate) fn grow(&mut self) -> Option<u16> {
        if self.published == self.max {
            return None;
        }
        self.publish(self.published.max(1).saturating_mul(2).min(self.max) - self.published);
        Some(self.published)
    }

    /// Buffers lent to the kernel so far (in the ring or in use).
    #[cfg(test)]
    pub(crate) fn published(&self) -> u16 {
        self.published
    }

    fn publish(&mut self, more: u16) {
        for id in self.published..self.published + more {
            self.push(id);
        }
        self.published += more;
        self.store_tail();
    }

    fn push(&mut self, id: u16) {
        let index = (self.tail & (self.max - 1)) as usize;
        // SAFETY: `index < max` entries of the ring mapping. Only addr, len and bid
        // are written: entry 0's last field is the shared tail.
        let entry = unsafe { &mut *self.ring.addr().cast::<BufRingEntry>().add(index) };
        entry.set_addr(self.buffers.addr() as u64 + (id as usize * BUF_SIZE) as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn store_tail(&self) {
        // SAFETY: the tail is the u16 at the end of the ring's first entry, aligned,
        // and read by the kernel concurrently, so it is written atomically; Release
        // makes the entries written before it visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.addr().cast()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

/// Anonymous, private, zero-filled memory from `mmap`: page-aligned, and
/// resident only where written.
struct Mapping {
    addr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast()).expect("mmap returned null");
        Ok(Mapping { addr, len })
    }

    fn addr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and nothing points into it any more (see
        // BufRing::register).
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool doubles on each `grow`, stops at the ring's size, and says so.
    #[test]
    fn the_pool_doubles_up_to_the_ring_size() {
        let Ok(ring) = Ring::new() else {
            eprintln!("skipping: {}", crate::availability().unwrap_err());
            return;
        };
        let mut pool = BufRing::register(
            &ring,
            PoolSize {
                initial: 3,
                max: 16,
            },
        )
        .unwrap();
        assert_eq!(pool.published(), 3);
        assert_eq!(pool.grow(), Some(6));
        assert_eq!(pool.grow(), Some(12));
        assert_eq!(pool.grow(), Some(16));
        assert_eq!(pool.grow(), None);
        assert_eq!(pool.published(), 16);
        drop(ring);
    }
}
