# syntax=docker/dockerfile:1
# The bot-runner image: the Rust music bot, libopus, and a pinned yt-dlp with Deno (the
# JavaScript runtime yt-dlp needs for YouTube), non-root.
#   docker build -f docker/bot-runner.Dockerfile -t REGISTRY/bot-runner:TAG .
# Build from the repository root (the whole workspace is the build context).
#
# scripts/build-images builds the same runtime stage with no network and no registry:
# PARTS=prebuilt takes the binary and the yt-dlp venv from the context's prebuilt/ folder,
# RUNTIME_BASE names a Debian image that already holds the runtime packages.

ARG YTDLP_VERSION=2026.10.26
ARG PARTS=from-source
ARG RUNTIME_BASE=runtime-base

FROM rust:1.95-bookworm AS build
# libopus is linked dynamically (pkg-config finds libopus-dev); cmake for native deps.
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libopus-dev cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p bot-runner --bin bot-runner \
 && install -D target/release/bot-runner /out/bot-runner

# yt-dlp in a venv of Debian's Python (3.11), built apart so pip stays out of the runtime.
# The deno extra brings the Deno binary from the Python package index into the venv.
FROM debian:bookworm-slim AS ytdlp
ARG YTDLP_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/yt-dlp \
 && /opt/yt-dlp/bin/pip install --no-cache-dir --disable-pip-version-check "yt-dlp[default,deno]==${YTDLP_VERSION}" \
 && /opt/yt-dlp/bin/yt-dlp --version \
 && /opt/yt-dlp/bin/deno --version

# The two parts the runtime needs, /out/bot-runner and /opt/yt-dlp, built from source...
FROM ytdlp AS from-source
COPY --from=build /out/bot-runner /out/bot-runner
# ...or made beforehand (scripts/build-images: the test build's binary, a venv made on the host).
FROM scratch AS prebuilt
COPY prebuilt/ /
FROM ${PARTS} AS parts

# libopus0 for voice; python3 runs yt-dlp (the venv links to this interpreter); CA
# certificates for the TLS roots of Discord's voice servers and of media hosts.
FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM ${RUNTIME_BASE} AS runtime
COPY --from=parts /opt/yt-dlp /opt/yt-dlp
COPY --from=parts /out/bot-runner /usr/local/bin/bot-runner
# The root filesystem is read-only in the pod: every cache goes under /tmp (an emptyDir).
ENV PATH=/opt/yt-dlp/bin:/usr/local/bin:/usr/bin:/bin \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    DENO_DIR=/tmp/deno \
    PYTHONDONTWRITEBYTECODE=1
# 65532 matches the runAsUser the operator gives bot pods.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bot-runner"]
CMD ["run"]
