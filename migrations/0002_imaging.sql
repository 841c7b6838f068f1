-- Imaging: where a medium's image came from and how it was read.

create type source_format as enum (
    'device', 'raw', 'split_raw', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'dmg', 'ewf'
);
comment on type source_format is 'device: imaged with ddrescue; raw: registered in place; split_raw: segments concatenated; qcow2/vmdk/vhd/vhdx/dmg: converted with qemu-img; ewf: converted with ewfexport';

alter table medium
    add column source_format source_format,
    add column sector_size integer,
    add column non_tried_bytes bigint,
    add column unfinished_bytes bigint,
    add constraint medium_sector_size_valid check (sector_size in (512, 1024, 2048, 4096)),
    add constraint medium_unfinished_nonnegative check (non_tried_bytes >= 0 and unfinished_bytes >= 0);
comment on column medium.non_tried_bytes is 'bytes ddrescue has not tried yet';
comment on column medium.unfinished_bytes is 'bytes neither rescued nor bad: non-tried, non-trimmed, non-scraped';
