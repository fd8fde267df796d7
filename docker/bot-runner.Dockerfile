# syntax=docker/dockerfile:1
# The bot-runner image: the Rust music bot, libopus, and a pinned yt-dlp with Deno (the
# JavaScript runtime yt-dlp needs for YouTube), non-root.
#   docker build -f docker/bot-runner.Dockerfile -t REGISTRY/bot-runner:TAG .
# Build from the repository root (the whole workspace is the build context).

ARG YTDLP_VERSION=2026.10.26

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

FROM debian:bookworm-slim
# libopus0 for voice; python3 runs yt-dlp (the venv links to this interpreter); CA
# certificates for the TLS roots of Discord's voice servers and of media hosts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=ytdlp /opt/yt-dlp /opt/yt-dlp
COPY --from=build /out/bot-runner /usr/local/bin/bot-runner
# The root filesystem is read-only in the pod: every cache goes under /tmp (an emptyDir).
ENV PATH=/opt/yt-dlp/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    DENO_DIR=/tmp/deno \
    PYTHONDONTWRITEBYTECODE=1
# 65532 matches the runAsUser the operator gives bot pods.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bot-runner"]
CMD ["run"]
