# Two images from one build:
#   docker build --target agent -t ghcr.io/hrdag/ntt .                  # ntt, the node agent
#   docker build --target controller -t ghcr.io/hrdag/ntt-controller .  # the controller alone
# The agent image holds the tools the stages call (ddrescue, util-linux, filesystem tools, FUSE
# drivers, The Sleuth Kit); the controller image holds its binary and nothing else. Not built
# by CI here (no container builder on the build machines): `hadolint` lints this file in the
# chart tests.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked -p ntt-agent -p ntt-controller --bins

# The controller: no shell, no package manager, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot AS controller
COPY --from=build /src/target/release/ntt-controller /src/target/release/kubectl-ntt /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ntt-controller"]

# The agent (and `ntt` for the migration hook and `ntt init`): runs privileged as root.
FROM debian:bookworm-slim AS agent
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates gddrescue ewf-tools qemu-utils util-linux fdisk gdisk parted \
      e2fsprogs xfsprogs btrfs-progs squashfs-tools erofs-utils dosfstools mtools ntfs-3g \
      fuse3 fuse2fs fuseiso exfat-fuse squashfuse sleuthkit file attr postgresql-client \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ntt /usr/local/bin/
ENTRYPOINT []
CMD ["ntt", "agent"]
