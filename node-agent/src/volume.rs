//! Stage 2 (in progress): the volumes of a medium's image.
//!
//! ```text
//!   image ─ mmls (partition table: dos, gpt, mac) ─┬─ partitions ─ blkid probe ─ Volume { fs type, label, uuid }
//!                                                  └─ none: whole disk, or FAT at 16 KiB (Zip disks)
//! ```
//!
//! Rules: partitions are found by The Sleuth Kit's `mmls` (an independent reader that handles
//! DOS with extended/logical partitions, GPT and Apple partition maps) and filesystems by
//! `blkid` low-level probing at each partition's offset, reading the image file directly: no
//! loop device and no kernel partition parser are needed to discover volumes, and the partition
//! type byte is never trusted for the filesystem. Extended containers, swap and unknown or
//! empty partitions are recorded, never mounted.
//!
//! Not yet here (issue 4): attaching and mounting, FUSE and user-space fallbacks, locking,
//! catalog rows and the `ntt mount`/`ntt volumes` commands.

pub mod access;
pub mod attach;
pub mod fuse;
pub mod host;
pub mod partitions;
pub mod probe;
pub mod reader;
pub mod sweep;
pub mod tsk;
