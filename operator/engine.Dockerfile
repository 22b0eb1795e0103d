# syntax=docker/dockerfile:1
# The engine the operator deploys for an InferenceModel that names no image:
# the mistral.rs server (the `mistralrs` command of the mistralrs-cli crate),
# which the operator starts as `mistralrs serve --port P -m MODEL`. From the
# repository root:
#
#   docker build -f operator/engine.Dockerfile -t registry.example.org/synco-engine:0.8.1 .
#
# This is the CPU build. For NVIDIA GPU nodes build the same file with the CUDA
# feature, a builder that has Rust and the CUDA toolkit (nvcc), and a CUDA
# runtime base of the same CUDA version, e.g.
#
#   docker build -f operator/engine.Dockerfile \
#     --build-arg FEATURES=cuda \
#     --build-arg RUST_IMAGE=registry.example.org/rust-cuda:1.95-12.8 \
#     --build-arg BASE=docker.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#     -t registry.example.org/synco-engine:0.8.1-cuda .
#
# and point the operator at it (chart value operator.engineImage, or an
# InferenceModel's spec.engine.image).
#
# Build arguments: BASE, RUST_IMAGE and BINARIES as in gateway/Dockerfile;
# MISTRALRS_VERSION (the mistralrs-cli release) and FEATURES (its cargo features).
ARG BASE=docker.io/library/debian:bookworm-slim
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG BINARIES=build

FROM ${RUST_IMAGE} AS build
ARG MISTRALRS_VERSION=0.8.1
ARG FEATURES=
RUN cargo install mistralrs-cli --version "${MISTRALRS_VERSION}" --locked \
      --features "${FEATURES}" --root /usr/local \
 && install -D -m 0755 /usr/local/bin/mistralrs /out/mistralrs \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt \
 && install -d -m 0755 /out/huggingface

FROM ${BINARIES} AS binaries

FROM ${BASE}
# Certificate roots, for a model that comes from a hub over https.
COPY --from=binaries /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binaries /out/mistralrs /usr/local/bin/mistralrs
# Weights from a hub are cached here, writable by the engine's user (mount a volume
# to keep them).
COPY --from=binaries --chown=65532:65532 /out/huggingface /var/cache/huggingface
ENV HF_HOME=/var/cache/huggingface
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mistralrs"]
