//! The WASI side of a run: capped output pipes, a virtual clock driven by fuel, a
//! deterministic random source, and the preview1 imports we replace so that nothing a
//! guest can observe depends on the host's clock, load or disk.

use bytes::Bytes;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use wasmtime::{Caller, Extern, Linker, Memory};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::types::{Error as WasiError, Filestat, Lookupflags};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wiggle::{GuestMemory, GuestPtr};

use super::RunState;

/// Message of the trap that stops a guest at its output cap; recognised when the run ends.
pub(crate) const OUTPUT_LIMIT_TRAP: &str = "crucible: output limit exceeded";

/// Wall-clock time a guest sees at virtual time zero: 2024-01-01T00:00:00Z. A fixed epoch
/// keeps `time.time()` and friends identical from run to run.
const VIRTUAL_EPOCH_NS: u64 = 1_704_067_200 * 1_000_000_000;

// WASI preview1 constants used by the replaced imports.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const EVENTTYPE_CLOCK: u8 = 0;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const CLOCK_REALTIME: u32 = 0;
// Layout of a `dirent` (wasi_snapshot_preview1.witx).
const DIRENT_HEADER: usize = 24;
const DIRENT_INO: usize = 8;
const DIRENT_NAMLEN: usize = 16;

/// Captured stdout or stderr with a cap. Past the cap the write traps, which ends the run
/// at once (as the process backend kills a program at its cap) and is reported as
/// output_limit_exceeded; the bytes up to the cap are kept.
#[derive(Clone, Debug)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<CappedBuf>>,
}

#[derive(Debug)]
struct CappedBuf {
    data: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedPipe {
    pub(crate) fn new(cap: u64) -> CappedPipe {
        CappedPipe {
            inner: Arc::new(Mutex::new(CappedBuf {
                data: Vec::new(),
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                overflowed: false,
            })),
        }
    }

    /// Appends what fits; returns false when something did not.
    fn push(&self, bytes: &[u8]) -> bool {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = b.cap.saturating_sub(b.data.len());
        let take = room.min(bytes.len());
        b.data.extend_from_slice(&bytes[..take]);
        if take < bytes.len() {
            b.overflowed = true;
            return false;
        }
        true
    }

    /// The captured bytes and whether the cap was hit.
    pub(crate) fn take(&self) -> (Vec<u8>, bool) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut b.data), b.overflowed)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.push(&bytes) {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::Error::msg(OUTPUT_LIMIT_TRAP)))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always accept a large write: the cap is enforced in `write`, which traps, so a
        // guest never waits for room that will not come.
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.push(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(std::io::Error::other(OUTPUT_LIMIT_TRAP)))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The wall clock wasmtime-wasi uses internally (file times and the like): fixed, so it
/// never leaks the host's time into a guest.
pub(crate) struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(VIRTUAL_EPOCH_NS)
    }
}

/// The monotonic clock wasmtime-wasi uses internally; fixed for the same reason.
pub(crate) struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// 4 KiB of pseudo-random bytes from a fixed seed (splitmix64), cycled as the guest's
/// "random" source, so os.urandom, uuid4 and hash seeds repeat from run to run.
pub(crate) fn deterministic_random() -> wasmtime_wasi::Deterministic {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        let mut state: u64 = 0x0c0f_fee0_dead_beef;
        let mut out = Vec::with_capacity(4096);
        while out.len() < 4096 {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out
    });
    wasmtime_wasi::Deterministic::new(bytes.clone())
}

/// Guest time in nanoseconds: the fuel consumed so far, converted at the run's rate, plus
/// what the guest has slept and the clock's starting offset. It depends only on what the
/// guest executed, never on the host.
fn virtual_now(caller: &Caller<'_, RunState>) -> u64 {
    let st = caller.data();
    let remaining = caller.get_fuel().unwrap_or(0);
    let used = st.fuel_budget.saturating_sub(remaining);
    let ns = (u128::from(used) * 1_000_000 / u128::from(st.fuel_per_ms.max(1))) as u64;
    st.clock_offset_ns
        .saturating_add(st.slept_ns)
        .saturating_add(ns)
}

fn memory(caller: &mut Caller<'_, RunState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn write_u64(caller: &mut Caller<'_, RunState>, mem: Memory, ptr: u32, v: u64) -> i32 {
    match mem.write(caller, ptr as usize, &v.to_le_bytes()) {
        Ok(()) => ERRNO_SUCCESS,
        Err(_) => ERRNO_FAULT,
    }
}

const M: &str = "wasi_snapshot_preview1";

/// What a guest sees of file identities and times, made deterministic. The host's inode
/// numbers and timestamps differ from run to run (a fresh work dir, files written just
/// now), and whether a file's host mtime moves between two looks depends on the kernel's
/// timestamp granularity, i.e. on timing. CPython branches on it (importlib re-lists a
/// directory when its mtime changes), which made fuel_used vary. So inode numbers are
/// numbered in the order the guest first sees them, and every timestamp is the virtual
/// epoch: files never appear to change time, as on a read-only image. A program that
/// writes a module and then imports it must call `importlib.invalidate_caches()` first,
/// as CPython's documentation asks anyway.
#[derive(Default)]
pub(crate) struct VirtualFiles {
    inos: HashMap<u64, u64>,
}

impl VirtualFiles {
    fn ino(&mut self, host: u64) -> u64 {
        if host == 0 {
            return 0; // stdio: wasmtime-wasi reports no identity
        }
        let next = self.inos.len() as u64 + 1;
        *self.inos.entry(host).or_insert(next)
    }

    /// Our inode number, and the epoch for every time the host gave (stdio's zeros
    /// stay zero).
    fn filestat(&mut self, mut stat: Filestat) -> Filestat {
        for t in [&mut stat.atim, &mut stat.mtim, &mut stat.ctim] {
            if *t != 0 {
                *t = VIRTUAL_EPOCH_NS;
            }
        }
        stat.ino = self.ino(stat.ino);
        stat
    }

    /// Rewrites the inode numbers of the whole `dirent` headers in a readdir buffer.
    fn dirents(&mut self, buf: &mut [u8]) {
        let mut off = 0;
        while off + DIRENT_HEADER <= buf.len() {
            let ino = self.ino(read_u64(buf, off + DIRENT_INO));
            buf[off + DIRENT_INO..off + DIRENT_INO + 8].copy_from_slice(&ino.to_le_bytes());
            let namlen = u32::from_le_bytes(
                buf[off + DIRENT_NAMLEN..off + DIRENT_NAMLEN + 4]
                    .try_into()
                    .unwrap_or([0; 4]),
            );
            off = off + DIRENT_HEADER + namlen as usize;
        }
    }
}

fn read_u64(buf: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(buf[off..off + 8].try_into().unwrap_or([0; 8]))
}

/// Runs one of wasmtime-wasi's preview1 functions on the guest's memory and the run's
/// WASI context. Returns Ok(errno) for the guest (0 on success); a trap stays a trap.
fn call_wasi(
    caller: &mut Caller<'_, RunState>,
    f: impl AsyncFnOnce(
        &mut WasiP1Ctx,
        &mut GuestMemory<'_>,
        &mut VirtualFiles,
    ) -> Result<(), WasiError>,
) -> wasmtime::Result<i32> {
    let Some(mem) = memory(caller) else {
        return Ok(ERRNO_FAULT);
    };
    let (bytes, state) = mem.data_and_store_mut(caller);
    let mut guest = GuestMemory::Unshared(bytes);
    let out = wasmtime_wasi::runtime::in_tokio(f(&mut state.wasi, &mut guest, &mut state.files));
    match out {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(e) => match e.downcast() {
            Ok(errno) => Ok(errno as i32),
            Err(trap) => Err(trap),
        },
    }
}

/// Replaces the preview1 imports whose behaviour would make runs differ: the clocks and
/// poll_oneoff (host time, real sleeps), and the file-metadata calls (host inode numbers
/// and timestamps; see [`VirtualFiles`]).
pub(crate) fn add_overrides(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        M,
        "fd_filestat_get",
        |mut caller: Caller<'_, RunState>, fd: u32, out: u32| -> wasmtime::Result<i32> {
            call_wasi(&mut caller, async |wasi, mem, files| {
                let stat = wasi.fd_filestat_get(mem, fd.into()).await?;
                mem.write(GuestPtr::new(out), files.filestat(stat))?;
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        M,
        "path_filestat_get",
        |mut caller: Caller<'_, RunState>,
         fd: u32,
         flags: u32,
         path: u32,
         path_len: u32,
         out: u32|
         -> wasmtime::Result<i32> {
            call_wasi(&mut caller, async |wasi, mem, files| {
                let flags = Lookupflags::try_from(flags)?;
                let path = GuestPtr::new((path, path_len));
                let stat = wasi.path_filestat_get(mem, fd.into(), flags, path).await?;
                mem.write(GuestPtr::new(out), files.filestat(stat))?;
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        M,
        "fd_readdir",
        |mut caller: Caller<'_, RunState>,
         fd: u32,
         buf: u32,
         buf_len: u32,
         cookie: u64,
         used_ptr: u32|
         -> wasmtime::Result<i32> {
            call_wasi(&mut caller, async |wasi, mem, files| {
                let start = GuestPtr::<u8>::new(buf);
                let used = wasi
                    .fd_readdir(mem, fd.into(), start, buf_len, cookie)
                    .await?;
                if let Some(bytes) = mem.as_slice_mut(start.as_array(used))? {
                    files.dirents(bytes);
                }
                mem.write(GuestPtr::new(used_ptr), used)?;
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut caller: Caller<'_, RunState>, id: u32, _precision: u64, out: u32| -> i32 {
            let Some(mem) = memory(&mut caller) else {
                return ERRNO_FAULT;
            };
            let now = virtual_now(&caller);
            let value = if id == CLOCK_REALTIME {
                VIRTUAL_EPOCH_NS.saturating_add(now)
            } else {
                now
            };
            write_u64(&mut caller, mem, out, value)
        },
    )?;
    linker.func_wrap(
        M,
        "clock_res_get",
        |mut caller: Caller<'_, RunState>, _id: u32, out: u32| -> i32 {
            let Some(mem) = memory(&mut caller) else {
                return ERRNO_FAULT;
            };
            write_u64(&mut caller, mem, out, 1)
        },
    )?;
    linker.func_wrap(
        M,
        "poll_oneoff",
        |mut caller: Caller<'_, RunState>, subs: u32, events: u32, n: u32, nevents: u32| -> i32 {
            poll_oneoff(&mut caller, subs, events, n, nevents)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// poll_oneoff with virtual time: descriptors (memory pipes, files) are always ready, so
/// they are reported at once; with none, the earliest clock fires after advancing the
/// virtual clock by its timeout, without sleeping on the host.
fn poll_oneoff(
    caller: &mut Caller<'_, RunState>,
    subs: u32,
    events: u32,
    n: u32,
    nevents: u32,
) -> i32 {
    let Some(mem) = memory(caller) else {
        return ERRNO_FAULT;
    };
    if n == 0 {
        return ERRNO_INVAL;
    }
    let n = n as usize;
    let Some(len) = n.checked_mul(SUBSCRIPTION_SIZE) else {
        return ERRNO_INVAL;
    };
    let mut raw = vec![0u8; len];
    if mem.read(&*caller, subs as usize, &mut raw).is_err() {
        return ERRNO_FAULT;
    }
    let now = virtual_now(caller);
    let mut ready: Vec<[u8; EVENT_SIZE]> = Vec::new();
    let mut earliest: Option<(u64, u64)> = None; // (wake time, userdata)
    for sub in raw.chunks_exact(SUBSCRIPTION_SIZE) {
        let userdata = u64::from_le_bytes(sub[0..8].try_into().unwrap_or([0; 8]));
        let tag = sub[8];
        let mut ev = [0u8; EVENT_SIZE];
        ev[0..8].copy_from_slice(&userdata.to_le_bytes());
        ev[10] = tag;
        if tag == EVENTTYPE_CLOCK {
            let clock = u32::from_le_bytes(sub[16..20].try_into().unwrap_or([0; 4]));
            let timeout = u64::from_le_bytes(sub[24..32].try_into().unwrap_or([0; 8]));
            let flags = u16::from_le_bytes(sub[40..42].try_into().unwrap_or([0; 2]));
            let wake = if flags & SUBCLOCKFLAGS_ABSTIME != 0 {
                let base = if clock == CLOCK_REALTIME {
                    VIRTUAL_EPOCH_NS
                } else {
                    0
                };
                timeout.saturating_sub(base).max(now)
            } else {
                now.saturating_add(timeout)
            };
            if earliest.is_none_or(|(w, _)| wake < w) {
                earliest = Some((wake, userdata));
            }
        } else {
            // fd_read / fd_write: report one byte ready; the following read or write
            // gives the real answer (data, end of file, or an error).
            ev[16..24].copy_from_slice(&1u64.to_le_bytes());
            ready.push(ev);
        }
    }
    if ready.is_empty() {
        if let Some((wake, userdata)) = earliest {
            let st = caller.data_mut();
            st.slept_ns = st.slept_ns.saturating_add(wake.saturating_sub(now));
            let mut ev = [0u8; EVENT_SIZE];
            ev[0..8].copy_from_slice(&userdata.to_le_bytes());
            ev[10] = EVENTTYPE_CLOCK;
            ready.push(ev);
        }
    }
    let flat: Vec<u8> = ready.concat();
    if mem.write(&mut *caller, events as usize, &flat).is_err() {
        return ERRNO_FAULT;
    }
    match mem.write(
        &mut *caller,
        nevents as usize,
        &(ready.len() as u32).to_le_bytes(),
    ) {
        Ok(()) => ERRNO_SUCCESS,
        Err(_) => ERRNO_FAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_pipe_keeps_the_prefix_and_flags_overflow() {
        let mut p = CappedPipe::new(5);
        assert!(OutputStream::write(&mut p, Bytes::from_static(b"abc")).is_ok());
        assert!(OutputStream::write(&mut p, Bytes::from_static(b"defg")).is_err());
        let (data, over) = p.take();
        assert_eq!(data, b"abcde");
        assert!(over);
    }

    #[test]
    fn file_identities_are_numbered_in_order_of_first_sight() {
        let mut v = VirtualFiles::default();
        assert_eq!(v.ino(0), 0);
        assert_eq!(v.ino(0xdead), 1);
        assert_eq!(v.ino(0xbeef), 2);
        assert_eq!(v.ino(0xdead), 1);
    }

    #[test]
    fn filestat_and_dirents_are_rewritten_in_place() {
        let mut v = VirtualFiles::default();
        let stat = v.filestat(Filestat {
            dev: 1,
            ino: 0x1234,
            filetype: wasmtime_wasi::p1::types::Filetype::RegularFile,
            nlink: 1,
            size: 42,
            atim: 1_700_000_000_123,
            mtim: 1_800_000_000_456,
            ctim: 0,
        });
        assert_eq!((stat.ino, stat.size), (1, 42));
        assert_eq!((stat.atim, stat.mtim), (VIRTUAL_EPOCH_NS, VIRTUAL_EPOCH_NS));
        assert_eq!(stat.ctim, 0, "a time the host left unset stays unset");
        // Two entries ("a", "bc") and a cut-off third header: same file, same number.
        let mut buf = Vec::new();
        for (ino, name) in [(0x9999u64, "a"), (0x1234, "bc")] {
            let mut h = [0u8; DIRENT_HEADER];
            h[DIRENT_INO..DIRENT_INO + 8].copy_from_slice(&ino.to_le_bytes());
            h[DIRENT_NAMLEN..DIRENT_NAMLEN + 4].copy_from_slice(&(name.len() as u32).to_le_bytes());
            buf.extend_from_slice(&h);
            buf.extend_from_slice(name.as_bytes());
        }
        buf.extend_from_slice(&[0xff; 10]);
        v.dirents(&mut buf);
        assert_eq!(read_u64(&buf, DIRENT_INO), 2);
        assert_eq!(read_u64(&buf, DIRENT_HEADER + 1 + DIRENT_INO), 1);
        assert_eq!(&buf[buf.len() - 10..], &[0xff; 10]);
    }

    #[test]
    fn random_bytes_repeat() {
        use wasmtime_wasi::Rng;
        let mut a = deterministic_random();
        let mut b = deterministic_random();
        assert_eq!(a.next_u64(), b.next_u64());
    }
}

/// A guest's stdin and stdout as one socket to another process (the checker that calls
/// the guest's functions): reads block until the other side writes or closes, writes
/// go straight to it. The guest's thread is its own, so blocking it waits for nothing
/// else; the other side's own limits bound the wait.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    socket: Arc<std::fs::File>,
}

impl Channel {
    pub(crate) fn new(fd: std::os::fd::OwnedFd) -> Channel {
        Channel {
            socket: Arc::new(std::fs::File::from(fd)),
        }
    }

    fn read_blocking(&self, size: usize) -> StreamResult<Bytes> {
        use std::io::Read;
        let mut buf = vec![0u8; size.clamp(1, 1 << 16)];
        loop {
            match (&*self.socket).read(&mut buf) {
                Ok(0) => return Err(StreamError::Closed),
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Bytes::from(buf));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(StreamError::Closed),
            }
        }
    }

    fn write_all(&self, bytes: &[u8]) -> StreamResult<()> {
        use std::io::Write;
        // A checker that is gone reads nothing more: the guest learns it as a closed
        // stream and its harness ends.
        (&*self.socket)
            .write_all(bytes)
            .map_err(|_| StreamError::Closed)
    }
}

impl IsTerminal for Channel {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdinStream for Channel {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::InputStream> {
        Box::new(self.clone())
    }

    // WASI preview 1, the only interface the guests get, reads through p2_stream; the
    // async stream is for preview-2 guests, which never run here.
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(tokio::io::empty())
    }
}

impl StdoutStream for Channel {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Channel {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::InputStream for Channel {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.read_blocking(size)
    }
}

impl OutputStream for Channel {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_all(&bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}
