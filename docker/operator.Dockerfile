# syntax=docker/dockerfile:1
# The musicbot-operator image: one Rust binary on a distroless base, non-root.
#   docker build -f docker/operator.Dockerfile -t REGISTRY/musicbot-operator:TAG .
# Build from the repository root (the whole workspace is the build context).
#
# scripts/build-images builds the same runtime stage with no network and no registry:
# PARTS=prebuilt takes the binary from the context's prebuilt/ folder, and a Debian base
# made from Debian's packages is tagged as the distroless name below.

ARG PARTS=from-source

# Same Debian release as the runtime image, so the binary's glibc matches.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of
# the cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p musicbot-operator --bin musicbot-operator \
 && install -D target/release/musicbot-operator /out/musicbot-operator

FROM scratch AS from-source
COPY --from=build /out/musicbot-operator /out/musicbot-operator
FROM scratch AS prebuilt
COPY prebuilt/ /
FROM ${PARTS} AS parts

# glibc, libgcc and CA certificates only: no shell, no package manager. The operator uses
# rustls (no OpenSSL) and writes no files, so a read-only root filesystem works.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=parts /out/musicbot-operator /usr/local/bin/musicbot-operator
# 65532 is distroless' "nonroot"; the chart's securityContext uses the same ids.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/musicbot-operator"]
