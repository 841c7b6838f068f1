//! The one definition of a file's `excluded` and `pending` states, used by the load, `ntt
//! include`, the copy, the report and `ntt status`.
//!
//! - **Excluded**: a file inode every name of which (every path row) carries an exclusion
//!   reason. A hard link with one name excluded and one not is pending: its content is wanted.
//! - **Pending**: a file inode in state `pending` — neither copied, failed nor excluded. The copy
//!   claims exactly these, a medium is copied when none is left, and the report counts the
//!   names not excluded whose inode is pending.
//!
//! A name that is not excluded while its inode is `excluded` fits no part of the report's
//! accounting, so such an inconsistency shows as an imbalance instead of hiding.

/// The statement that brings every file inode of `medium` whose names' exclusions changed (or
/// were just loaded) into line with the definition: `excluded` when every name is excluded,
/// `pending` otherwise. Only inodes that are `pending` or `excluded` change (copied and failed
/// files keep their outcome); `inode` and `path` name the tables (the published partitions'
/// parents, or a load's `_next` tables).
pub(crate) fn exclusion_update(medium: i64, inode: &str, path: &str) -> String {
    format!(
        "with candidates as (
             select volume_no, ino from {path} where medium_id = {medium} and excluded_reason is not null
             union
             select volume_no, ino from {inode} where medium_id = {medium} and state = 'excluded'
         ), decided as (
             select c.volume_no, c.ino,
                    case when exists (select 1 from {path} p
                                       where p.medium_id = {medium} and p.volume_no = c.volume_no
                                         and p.ino = c.ino and p.excluded_reason is null)
                         then 'pending' else 'excluded' end::copy_state as state
               from candidates c
         )
         update {inode} i set state = d.state
           from decided d
          where i.medium_id = {medium} and i.volume_no = d.volume_no and i.ino = d.ino
            and i.kind = 'file' and i.state in ('pending', 'excluded') and i.state <> d.state"
    )
}
