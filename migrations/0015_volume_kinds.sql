-- Volumes that hold no filesystem we read are recorded as what they are, with why they are not
-- read: encrypted (LUKS, BitLocker, random-looking without a signature), members of a volume
-- group or array (LVM2, md RAID, other pools), blank (one fill byte everywhere).

alter type volume_role add value if not exists 'encrypted';
alter type volume_role add value if not exists 'member';
alter type volume_role add value if not exists 'blank';
-- deleted: the deleted entries of a filesystem volume, read with The Sleuth Kit (a view of the
-- same bytes; added here so that the next migration can name it in constraints).
alter type volume_role add value if not exists 'deleted';
comment on type volume_role is 'filesystem: a probed filesystem to read; extended_container: a DOS extended partition (holds logical partitions); swap; encrypted: LUKS, BitLocker, or random-looking without a signature; member: of an LVM volume group, md array or other pool; blank: one fill byte everywhere; deleted: the deleted entries of a filesystem volume; unknown: no recognised filesystem (damaged, or a type not read). Only filesystems are attached.';

alter table volume add column problem text;
comment on column volume.problem is 'Why a volume that is not a filesystem we read is not read (its kind, blkid type or fill byte), for people.';
