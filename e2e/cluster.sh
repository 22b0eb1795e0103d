#!/usr/bin/env bash
# A local, real Kubernetes control plane for Synco's end-to-end tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
# (simulated CPU and GPU nodes), built from the Go modules in e2e/harness and
# run as local processes on 127.0.0.1 only. See e2e/README.md.
#
#   e2e/cluster.sh build               build (or find cached) binaries; print their folder
#   e2e/cluster.sh up [--watch-pid P] [--real-node]
#                                      start a cluster; print KEY=VALUE env lines;
#                                      --real-node (or SYNCO_E2E_REAL_NODE=1) adds a
#                                      kubelet with containerd and runc (root)
#   e2e/cluster.sh env                 print the env lines of a running cluster
#   e2e/cluster.sh status              say whether it runs, and list its nodes
#   e2e/cluster.sh down [--clean]      stop it, leaving no process behind
#   e2e/cluster.sh kubectl ARGS...     kubectl as the admin of that cluster
#   e2e/cluster.sh helm ARGS...        helm as the admin of that cluster
#
# Options (or environment):
#   --run-dir DIR   (SYNCO_E2E_RUN_DIR)  state, logs, kubeconfigs; default e2e/.cache/run
#   SYNCO_E2E_CACHE                      cache root; binaries go to $SYNCO_E2E_CACHE/bin/<hash>/
#                                        (default ~/.cache/synco-e2e)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HARNESS="$HERE/harness"
CACHE="${SYNCO_E2E_CACHE:-$HOME/.cache/synco-e2e}"
RUN_DIR="${SYNCO_E2E_RUN_DIR:-$HERE/.cache/run}"
WATCH_PID=0
CLEAN=0
REAL_NODE="${SYNCO_E2E_REAL_NODE:-0}"
UP_TIMEOUT="${SYNCO_E2E_UP_TIMEOUT:-180}"

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- build -------------------------------------------------------------------

# The cache key covers everything that changes the binary: sources, module
# pins, the Go toolchain, and this script's build flags.
build_key() {
	(
		cd "$HARNESS"
		go env GOVERSION GOOS GOARCH
		sed -n '/^# build-flags-begin/,/^# build-flags-end/p' "$HERE/cluster.sh"
		for f in go.mod go.sum $(ls ./*.go ./cmd/*/*.go | LC_ALL=C sort); do
			printf '%s\n' "$f"
			cat "$f"
		done
	) | sha256sum | cut -c1-16
}

mod_version() { awk -v m="$1" '$1 == m { print $2; exit }' "$HARNESS/go.mod"; }

do_build() {
	command -v go >/dev/null || die "go is not installed (needed to build the harness)"
	local key bindir
	key="$(build_key)"
	bindir="$CACHE/bin/$key"
	if [[ -x "$bindir/synco-cluster" ]]; then
		printf '%s\n' "$bindir"
		return
	fi
	mkdir -p "$CACHE/bin"
	# One build at a time per cache, whoever asks.
	exec 9>"$CACHE/build.lock"
	flock 9
	if [[ ! -x "$bindir/synco-cluster" ]]; then
# build-flags-begin
		local kv hv ldflags
		kv="$(mod_version k8s.io/kubernetes)"
		hv="$(mod_version helm.sh/helm/v4)"
		local major="${kv#v}"; major="${major%%.*}"
		local minor="${kv#v*.}"; minor="${minor%%.*}"
		ldflags="-s -w"
		for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldflags+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
			ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
		done
		ldflags+=" -X helm.sh/helm/v4/internal/version.version=$hv"
		log "building the control plane (kubernetes $kv, helm $hv) into $bindir; a cold build takes a while"
		local tmp start
		tmp="$(mktemp -d "$CACHE/bin/.build.XXXXXX")"
		start=$SECONDS
		# kwok v0.7.0 (the last release on Kubernetes 1.33 modules) checks the
		# watch-list "initial-events-list-blueprint" annotation, which
		# apimachinery 0.34 and the 1.34 API server dropped. Build it from a
		# copy with that check taken out, through a temporary go.mod that
		# replaces the module with the copy; the committed go.mod stays plain.
		local kwok_dir
		kwok_dir="$(cd "$HARNESS" && go mod download -json sigs.k8s.io/kwok | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
		[[ -d "$kwok_dir" ]] || { rm -rf "$tmp"; die "could not download sigs.k8s.io/kwok"; }
		cp -r "$kwok_dir" "$tmp/kwok"
		chmod -R u+w "$tmp/kwok"
		sed -i '/base64EncodedInitialEventsListBlueprint :=/,+3d' "$tmp/kwok/pkg/utils/informer/informer.go"
		if grep -q InitialEventsListBlueprint "$tmp/kwok/pkg/utils/informer/informer.go"; then
			rm -rf "$tmp"
			die "the kwok patch no longer applies; see e2e/cluster.sh"
		fi
		cp "$HARNESS/go.mod" "$HARNESS/go.sum" "$tmp/"
		printf '\nreplace sigs.k8s.io/kwok => %s\n' "$tmp/kwok" >>"$tmp/go.mod"
# build-flags-end
		if ! (cd "$HARNESS" && CGO_ENABLED=0 go build -mod=readonly -modfile="$tmp/go.mod" -trimpath \
			-ldflags "$ldflags" -o "$tmp/synco-cluster" .); then
			rm -rf "$tmp"
			die "go build failed"
		fi
		# The real node's sandbox process, small enough for an image of its own.
		if ! (cd "$HARNESS" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
			-o "$tmp/pause" ./cmd/pause); then
			rm -rf "$tmp"
			die "go build of the pause binary failed"
		fi
		rm -rf "$tmp/kwok" "$tmp/go.mod" "$tmp/go.sum"
		for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubelet kubectl helm; do
			ln -s synco-cluster "$tmp/$name"
		done
		rm -rf "$bindir"
		mv "$tmp" "$bindir"
		log "built in $((SECONDS - start))s"
		# Older builds are dead weight (about 200 MB each).
		for old in "$CACHE"/bin/*/; do
			[[ "${old%/}" == "$bindir" ]] || rm -rf "${old%/}"
		done
	fi
	flock -u 9
	printf '%s\n' "$bindir"
}

# --- run ---------------------------------------------------------------------

supervisor_pid() {
	local f="$RUN_DIR/supervisor.pid" pid
	[[ -f "$f" ]] || return 1
	pid="$(<"$f")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'synco-cluster supervise' || return 1
	printf '%s\n' "$pid"
}

print_env() {
	cat "$RUN_DIR/env"
	printf 'SYNCO_E2E_BIN=%s\n' "$(dirname "$(readlink -f "$RUN_DIR/bin/synco-cluster")")"
}

do_up() {
	local bindir pid start
	if pid="$(supervisor_pid)"; then
		[[ -f "$RUN_DIR/ready" ]] || die "a cluster is starting in $RUN_DIR (pid $pid)"
		log "already running in $RUN_DIR (pid $pid)"
		print_env
		return
	fi
	bindir="$(do_build)"
	RUN_DIR="$(mkdir -p "$RUN_DIR" && cd "$RUN_DIR" && pwd)"
	# A fresh cluster needs a fresh directory: stale etcd data or certificates
	# would not match. Only ever empty a directory an earlier run made.
	if [[ -n "$(ls -A "$RUN_DIR")" ]]; then
		[[ -f "$RUN_DIR/.synco-e2e-run" ]] || die "$RUN_DIR is not empty and not a run directory; refusing to reuse it"
		unmount_under "$RUN_DIR"
		find "$RUN_DIR" -mindepth 1 -delete
	fi
	: >"$RUN_DIR/.synco-e2e-run"
	mkdir -p "$RUN_DIR/logs" "$RUN_DIR/bin"
	ln -s "$bindir/synco-cluster" "$RUN_DIR/bin/synco-cluster"
	start=$SECONDS
	# setsid: the supervisor leads a new session and process group; every
	# component is its child in that group, so down can check none is left.
	local node_flag=()
	[[ "$REAL_NODE" == 1 ]] && node_flag=(--real-node)
	setsid "$bindir/synco-cluster" supervise --run-dir "$RUN_DIR" --watch-pid "$WATCH_PID" "${node_flag[@]}" \
		>"$RUN_DIR/logs/supervisor.log" 2>&1 </dev/null &
	pid=$!
	while :; do
		if [[ -f "$RUN_DIR/ready" ]]; then break; fi
		if [[ -f "$RUN_DIR/failed" ]] || ! kill -0 "$pid" 2>/dev/null; then
			log "the cluster failed to start: $(cat "$RUN_DIR/failed" 2>/dev/null || echo 'supervisor exited')"
			tail -n 30 "$RUN_DIR/logs/supervisor.log" >&2 || true
			do_down || true
			exit 1
		fi
		if ((SECONDS - start > UP_TIMEOUT)); then
			log "the cluster was not ready after ${UP_TIMEOUT}s"
			tail -n 30 "$RUN_DIR/logs/supervisor.log" >&2 || true
			do_down || true
			exit 1
		fi
		sleep 0.1
	done
	log "up in $((SECONDS - start))s: $RUN_DIR (supervisor pid $pid)"
	print_env
}

# A real node's kubelet and containerd mount volumes and root filesystems under
# the run directory; the supervisor unmounts them when it stops, and this is the
# backstop (deepest first, detached) before anything there is deleted.
unmount_under() {
	local dir="$1" m
	[[ -d "$dir" ]] || return 0
	dir="$(cd "$dir" && pwd -P)"
	awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
		LC_ALL=C sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || log "could not unmount $m"
	done
}

do_down() {
	local pid pgid waited=0
	if ! pid="$(supervisor_pid)"; then
		log "no cluster running in $RUN_DIR"
	else
		pgid="$pid"
		kill -TERM "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do
			if ((waited > 400)); then
				log "supervisor $pid did not stop within 40s: killing its process group"
				break
			fi
			sleep 0.1
			waited=$((waited + 1))
		done
		# Backstop: anything left in the group (there should be nothing).
		if pgrep -g "$pgid" >/dev/null 2>&1; then
			log "killing leftover processes in group $pgid: $(pgrep -g "$pgid" | tr '\n' ' ')"
			kill -KILL -- "-$pgid" 2>/dev/null || true
			sleep 0.5
		fi
		if pgrep -g "$pgid" >/dev/null 2>&1; then
			die "processes are still running in group $pgid"
		fi
		log "stopped $RUN_DIR"
	fi
	if ((CLEAN)); then
		unmount_under "$RUN_DIR"
		rm -rf "$RUN_DIR"
	fi
}

do_status() {
	local pid
	if ! pid="$(supervisor_pid)"; then
		echo "stopped ($RUN_DIR)"
		return 1
	fi
	if [[ ! -f "$RUN_DIR/ready" ]]; then
		echo "starting ($RUN_DIR, pid $pid)"
		return 1
	fi
	echo "running ($RUN_DIR, pid $pid)"
	"$RUN_DIR/bin/synco-cluster" kubectl --kubeconfig "$RUN_DIR/kubeconfig" get --raw /readyz >/dev/null
	"$RUN_DIR/bin/synco-cluster" kubectl --kubeconfig "$RUN_DIR/kubeconfig" get nodes \
		-L nvidia.com/gpu.product -L nvidia.com/gpu.count
}

tool() {
	local name="$1"
	shift
	supervisor_pid >/dev/null || die "no cluster running in $RUN_DIR (run: e2e/cluster.sh up)"
	KUBECONFIG="$RUN_DIR/kubeconfig" exec "$RUN_DIR/bin/synco-cluster" "$name" "$@"
}

cmd="${1:-}"
[[ -n "$cmd" ]] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shift
if [[ "$cmd" == kubectl || "$cmd" == helm ]]; then
	tool "$cmd" "$@"
fi
while (($#)); do
	case "$1" in
	--run-dir) RUN_DIR="$2"; shift 2 ;;
	--run-dir=*) RUN_DIR="${1#*=}"; shift ;;
	--watch-pid) WATCH_PID="$2"; shift 2 ;;
	--watch-pid=*) WATCH_PID="${1#*=}"; shift ;;
	--clean) CLEAN=1; shift ;;
	--real-node) REAL_NODE=1; shift ;;
	*) die "unknown argument: $1" ;;
	esac
done

case "$cmd" in
build) do_build ;;
up) do_up ;;
down) do_down ;;
env)
	[[ -f "$RUN_DIR/ready" ]] || die "no cluster ready in $RUN_DIR"
	print_env
	;;
status) do_status ;;
*) die "unknown command: $cmd (build|up|down|env|status|kubectl|helm)" ;;
esac
