//! One directory entry of a volume, as every reader (a mount, The Sleuth Kit) reports it: the
//! catalog's entry, which a load records as it is.

pub use crate::catalog::entry::{Entry, EntryKind};
