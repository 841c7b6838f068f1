//! Which ways to try to read a volume, in order (pure).

use std::path::Path;

use serde::Serialize;

use crate::volume::attach;
use crate::volume::fuse;
use crate::volume::probe::FsType;
use crate::volume::tsk;

/// How a volume is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A kernel mount of a read-only loop device.
    Kernel,
    /// A FUSE driver on a read-only loop device.
    Fuse,
    /// The Sleuth Kit reading the image directly.
    Userspace,
}

impl Method {
    /// The name in messages and the catalog.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Fuse => "fuse",
            Self::Userspace => "userspace",
        }
    }
}

/// One way to try to read a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The method.
    pub method: Method,
    /// The type to read it as (the other optical type for an ISO/UDF bridge disc).
    pub fs_type: FsType,
}

/// The attempts for a probed type, in order (pure): kernel if this kernel has the driver, then
/// FUSE, then The Sleuth Kit; an optical disc tries all of them for the other optical type next.
pub fn plan(fs_type: FsType, kernel_filesystems: &[String]) -> Vec<Attempt> {
    let types: &[FsType] = match fs_type {
        FsType::Iso9660 => &[FsType::Iso9660, FsType::Udf],
        FsType::Udf => &[FsType::Udf, FsType::Iso9660],
        _ => std::slice::from_ref(&fs_type),
    };
    let mut attempts = Vec::new();
    for &fs_type in types {
        if let Some((kernel, _)) = attach::kernel_mount(fs_type)
            && kernel_filesystems.iter().any(|k| k == kernel)
        {
            attempts.push(Attempt {
                method: Method::Kernel,
                fs_type,
            });
        }
        if fuse::fuse_driver(fs_type, Path::new("-"), Path::new("-")).is_some() {
            attempts.push(Attempt {
                method: Method::Fuse,
                fs_type,
            });
        }
        if tsk::tsk_type(fs_type).is_some() {
            attempts.push(Attempt {
                method: Method::Userspace,
                fs_type,
            });
        }
    }
    attempts
}

impl From<Method> for crate::catalog::volumes::AccessValue {
    fn from(value: Method) -> Self {
        match value {
            Method::Kernel => Self::Kernel,
            Method::Fuse => Self::Fuse,
            Method::Userspace => Self::Userspace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(types: &[&str]) -> Vec<String> {
        types.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn kernel_first_then_fuse_then_the_sleuth_kit() {
        let here = kernel(&["ext4", "xfs", "btrfs", "squashfs"]);
        let methods = |fs| {
            plan(fs, &here)
                .iter()
                .map(|a| (a.method, a.fs_type))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            methods(FsType::Ext4),
            [
                (Method::Kernel, FsType::Ext4),
                (Method::Fuse, FsType::Ext4),
                (Method::Userspace, FsType::Ext4)
            ]
        );
        assert_eq!(
            methods(FsType::Ntfs),
            [
                (Method::Fuse, FsType::Ntfs),
                (Method::Userspace, FsType::Ntfs)
            ]
        );
        assert_eq!(
            methods(FsType::Hfsplus),
            [(Method::Userspace, FsType::Hfsplus)]
        );
        assert_eq!(methods(FsType::Fat32), [(Method::Userspace, FsType::Fat32)]);
        assert_eq!(methods(FsType::Xfs), [(Method::Kernel, FsType::Xfs)]);
        assert_eq!(methods(FsType::Apfs), [(Method::Fuse, FsType::Apfs)]);
        assert!(methods(FsType::Hfs).is_empty());
    }

    #[test]
    fn a_lab_host_with_kernel_drivers_uses_them() {
        let lab = kernel(&["vfat", "hfsplus", "iso9660", "udf", "ntfs3"]);
        assert_eq!(plan(FsType::Fat16, &lab)[0].method, Method::Kernel);
        assert_eq!(plan(FsType::Hfsplus, &lab)[0].method, Method::Kernel);
        assert_eq!(plan(FsType::Ntfs, &lab)[0].method, Method::Kernel);
    }

    #[test]
    fn a_bridge_disc_tries_the_other_optical_type_after_the_first() {
        let here = kernel(&["ext4"]);
        let udf = plan(FsType::Udf, &here);
        assert_eq!(
            udf.iter()
                .map(|a| (a.method, a.fs_type))
                .collect::<Vec<_>>(),
            [
                (Method::Fuse, FsType::Iso9660),
                (Method::Userspace, FsType::Iso9660)
            ]
        );
        let lab = kernel(&["udf", "iso9660"]);
        let iso = plan(FsType::Iso9660, &lab);
        assert_eq!(
            (iso[0].method, iso[0].fs_type),
            (Method::Kernel, FsType::Iso9660)
        );
        assert!(
            iso.iter()
                .any(|a| a.method == Method::Kernel && a.fs_type == FsType::Udf)
        );
    }
}
