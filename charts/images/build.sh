#!/usr/bin/env bash
# Builds Synco's images on this machine, with no registry and no Docker engine:
# a Debian base made by mmdebstrap from Debian's packages, then buildah building
# the same Dockerfiles as `docker build` does, with their BINARIES stage given
# an image that holds binaries cargo built here (so nothing is compiled twice).
#
#   charts/images/build.sh [--profile release|dev | --bin-dir DIR] [--tag TAG]
#                          [--out DIR] [--engine-binary PATH] [IMAGE...]
#
# IMAGE is operator, gateway or engine (default: operator gateway). The
# binaries are built with cargo in the profile given (release by default), or
# taken as they are from --bin-dir (synco-operator, synco-gateway). The engine
# image needs a `mistralrs` binary: --engine-binary, or else it is built with
# `cargo install mistralrs-cli` (release, long) into the cache.
#
# Each image is written to DIR/synco-IMAGE.tar (an OCI archive) and named
# localhost/synco/synco-IMAGE:TAG. Then, for example:
#   ctr -n k8s.io images import DIR/synco-gateway.tar          (a node's containerd)
#   skopeo copy oci-archive:DIR/synco-gateway.tar \
#     docker://registry.example.org/synco-gateway:TAG          (push to a registry)
#
# Needs: mmdebstrap, buildah (Debian packages), cargo; root, or a user with
# subordinate ids for buildah. Environment: CARGO_TARGET_DIR (as cargo),
# SYNCO_IMAGES_CACHE (default ~/.cache/synco-images: the base, buildah's
# storage, the engine binary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${SYNCO_IMAGES_CACHE:-$HOME/.cache/synco-images}"
PROFILE=release
TAG=""
OUT="$ROOT/charts/images/out"
ENGINE_BINARY=""
BIN_DIR=""
MISTRALRS_VERSION=0.8.1
SUITE=bookworm
images=()

die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
log() { printf 'build.sh: %s\n' "$*" >&2; }

while [[ $# -gt 0 ]]; do
	case "$1" in
		--profile) PROFILE="$2"; shift 2 ;;
		--tag) TAG="$2"; shift 2 ;;
		--out) OUT="$2"; shift 2 ;;
		--engine-binary) ENGINE_BINARY="$2"; shift 2 ;;
		--bin-dir) BIN_DIR="$2"; shift 2 ;;
		-h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
		operator|gateway|engine) images+=("$1"); shift ;;
		*) die "unknown argument: $1" ;;
	esac
done
[[ ${#images[@]} -gt 0 ]] || images=(operator gateway)
case "$PROFILE" in release|dev) ;; *) die "--profile is release or dev" ;; esac
if [[ -z "$TAG" ]]; then
	TAG="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/synco/Chart.yaml")"
fi
for tool in mmdebstrap buildah; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
mkdir -p "$CACHE" "$OUT"
OUT="$(cd "$OUT" && pwd)"
export BUILDAH_ISOLATION=chroot
bh() { buildah --storage-driver vfs --root "$CACHE/storage" --runroot "$CACHE/run" "$@"; }

# The base: a minimal Debian without documentation or locales, as the slim
# images are. Made once per suite; remove it from the cache for a newer one.
BASE="localhost/synco/debian:$SUITE-slim"
if ! bh inspect --type image "$BASE" >/dev/null 2>&1; then
	log "making the Debian $SUITE base with mmdebstrap"
	tar="$CACHE/debian-$SUITE.tar"
	mmdebstrap --variant=minbase --mode=root --format=tar \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		"$SUITE" "$tar.part"
	mv "$tar.part" "$tar"
	c="$(bh from scratch)"
	bh add "$c" "$tar" / >&2
	bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
	bh commit --rm "$c" "$BASE" >/dev/null
	rm -f "$tar"
fi

# The binaries, built here.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
crates=()
for image in "${images[@]}"; do
	[[ "$image" == engine ]] || crates+=(-p "synco-$image")
done
if [[ -z "$BIN_DIR" ]]; then
	BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/$([[ "$PROFILE" == dev ]] && echo debug || echo release)"
	if [[ ${#crates[@]} -gt 0 ]]; then
		log "cargo build --profile $PROFILE ${crates[*]}"
		(cd "$ROOT" && cargo build --locked --profile "$PROFILE" "${crates[@]}" --bins)
	fi
fi
for image in "${images[@]}"; do
	case "$image" in
		engine)
			if [[ -z "$ENGINE_BINARY" ]]; then
				ENGINE_BINARY="$CACHE/engine-$MISTRALRS_VERSION/bin/mistralrs"
				if [[ ! -x "$ENGINE_BINARY" ]]; then
					log "cargo install mistralrs-cli $MISTRALRS_VERSION (CPU; a long build)"
					cargo install mistralrs-cli --version "$MISTRALRS_VERSION" --locked \
						--root "$CACHE/engine-$MISTRALRS_VERSION"
				fi
			fi
			install -D -m 0755 "$ENGINE_BINARY" "$stage/out/mistralrs"
			install -d -m 0755 "$stage/out/huggingface" ;;
		*) install -D -m 0755 "$BIN_DIR/synco-$image" "$stage/out/synco-$image" ;;
	esac
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$stage/out/ca-certificates.crt"
BINARIES="localhost/synco/binaries:$TAG"
c="$(bh from scratch)"
bh copy "$c" "$stage/out" /out >&2
bh commit --rm "$c" "$BINARIES" >/dev/null

# The images, from the Dockerfiles.
for image in "${images[@]}"; do
	case "$image" in
		engine) file="$ROOT/operator/engine.Dockerfile" ;;
		*) file="$ROOT/$image/Dockerfile" ;;
	esac
	name="localhost/synco/synco-$image:$TAG"
	log "building $name from ${file#"$ROOT"/}"
	bh bud --pull=never --layers=false \
		--build-arg "BASE=$BASE" --build-arg "BINARIES=$BINARIES" \
		-f "$file" -t "$name" "$stage" >&2
	rm -f "$OUT/synco-$image.tar"
	bh push "$name" "oci-archive:$OUT/synco-$image.tar:$name" >&2
	printf '%s\t%s\n' "$name" "$OUT/synco-$image.tar"
done
