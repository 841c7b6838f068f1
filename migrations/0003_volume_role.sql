-- What a discovered volume is: only filesystems are ever attached and read.

create type volume_role as enum ('filesystem', 'extended_container', 'swap', 'unknown');
comment on type volume_role is 'filesystem: a probed filesystem to read; extended_container: a DOS extended partition (holds logical partitions); swap; unknown: no recognised filesystem (empty, encrypted, damaged). Only filesystems are attached.';

alter table volume
    add column role volume_role not null default 'filesystem',
    add constraint volume_only_filesystems_ready check (state <> 'ready' or role = 'filesystem');
