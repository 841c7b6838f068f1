//! Stage 2: the volumes of a medium's image, and reading them.
//!
//! ```text
//!   image ─ mmls (dos, gpt, mac) ─┬─ partitions ─ blkid probe ─ volume rows (fs type, label, uuid)
//!                                 └─ none: whole disk, or FAT at 16 KiB (Zip disks)
//!   volume ─ access::plan ─ kernel mount ─┐
//!                         ─ FUSE driver  ─┼─ reader::VolumeReader (walk, open) ─ enumerate, copy
//!                         ─ Sleuth Kit   ─┘
//! ```
//!
//! Rules: partitions are found by The Sleuth Kit's `mmls` and filesystems by `blkid` low-level
//! probing at each partition's offset, reading the image file directly; the partition type byte
//! is never trusted for the filesystem. Extended containers, swap, encrypted volumes, members of
//! volume groups and arrays, blank and unknown partitions are recorded with what they are and
//! why they are not read ([`classify`]), never mounted. Each filesystem is read with the first method that works
//! ([`access::plan`]), under the medium's host lock, from the host's real state
//! ([`host`]: mountinfo and losetup), with everything attached released by guards.

pub mod access;
pub mod attach;
pub mod beneath;
pub mod classify;
pub mod entry;
pub mod fuse;
pub mod host;
pub mod lvm;
pub mod md;
pub mod partitions;
pub mod probe;
pub mod reader;
pub mod sweep;
pub mod tsk;
pub mod watchdog;
