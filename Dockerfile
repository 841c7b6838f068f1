# The NTT image: `ntt` (CLI and node agent), `ntt-controller` and `kubectl-ntt`, on Debian 12
# with the tools the stages call (ddrescue, util-linux, filesystem tools, FUSE drivers, The
# Sleuth Kit). Not built by CI here (no container runtime on the build machines).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked -p ntt-agent -p ntt-controller --bins

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates gddrescue ewf-tools qemu-utils util-linux fdisk gdisk parted \
      e2fsprogs xfsprogs btrfs-progs squashfs-tools erofs-utils dosfstools mtools ntfs-3g \
      fuse3 fuse2fs fuseiso exfat-fuse squashfuse sleuthkit file attr \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ntt /src/target/release/ntt-controller /src/target/release/kubectl-ntt /usr/local/bin/
# The controller runs as this user (the chart sets it); the agent runs privileged as root.
USER 65532:65532
ENTRYPOINT []
CMD ["ntt-controller"]
