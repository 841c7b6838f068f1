//! File extents from the kernel: the `FS_IOC_FIEMAP` ioctl on a file of a kernel mount.

use std::os::fd::AsRawFd;

/// One extent of a file: `length` bytes at file offset `logical` lie at `physical` bytes
/// from the start of the filesystem's block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset within the file.
    pub logical: u64,
    /// Offset within the device (the volume).
    pub physical: u64,
    /// Length in bytes.
    pub length: u64,
    /// The data is encoded (compressed): its bytes on the device do not map one to one.
    pub encoded: bool,
}

const EXTENT_LAST: u32 = 0x0001;
const EXTENT_UNKNOWN: u32 = 0x0002;
const EXTENT_DELALLOC: u32 = 0x0004;
const EXTENT_ENCODED: u32 = 0x0008;
const EXTENT_UNWRITTEN: u32 = 0x0800;
const BATCH: usize = 128;

/// `struct fiemap` of linux/fiemap.h, without its flexible array.
#[repr(C)]
#[derive(Default)]
struct Header {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
}

/// `struct fiemap_extent`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RawExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// The request with room for [`BATCH`] extents, laid out as the kernel expects.
#[repr(C)]
struct Request {
    header: Header,
    extents: [RawExtent; BATCH],
}

/// The extents of `file` that hold data on the device, in file order. Extents the kernel
/// cannot place (delayed allocation, unknown) and unwritten ones (they read as zeros whatever
/// the device holds) are left out.
pub fn extents(file: &impl AsRawFd) -> std::io::Result<Vec<Extent>> {
    let code = nix::request_code_readwrite!(b'f', 11, std::mem::size_of::<Header>());
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut request = Request {
            header: Header {
                start,
                length: u64::MAX - start,
                extent_count: u32::try_from(BATCH).unwrap_or(u32::MAX),
                ..Header::default()
            },
            extents: [RawExtent::default(); BATCH],
        };
        // SAFETY: FS_IOC_FIEMAP reads the header and writes at most `extent_count` extents
        // into the array that follows it; `Request` is #[repr(C)] with exactly that layout
        // and lives until the call returns. The descriptor is open for the whole call.
        #[expect(
            unsafe_code,
            reason = "FS_IOC_FIEMAP has no safe wrapper in nix or std"
        )]
        let rc = unsafe {
            nix::libc::ioctl(
                file.as_raw_fd(),
                code,
                std::ptr::from_mut(&mut request).cast::<nix::libc::c_void>(),
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mapped = usize::try_from(request.header.mapped_extents)
            .unwrap_or(0)
            .min(BATCH);
        if mapped == 0 {
            return Ok(out);
        }
        let mut last = false;
        for raw in &request.extents[..mapped] {
            last |= raw.flags & EXTENT_LAST != 0;
            start = raw.logical.saturating_add(raw.length);
            if raw.flags & (EXTENT_UNKNOWN | EXTENT_DELALLOC | EXTENT_UNWRITTEN) != 0 {
                continue;
            }
            out.push(Extent {
                logical: raw.logical,
                physical: raw.physical,
                length: raw.length,
                encoded: raw.flags & EXTENT_ENCODED != 0,
            });
        }
        if last {
            return Ok(out);
        }
    }
}
