package main

// The real node: a kubelet built from the same Kubernetes modules as the rest
// of the control plane, running real pods with containerd and runc from
// Debian's packages. Its pods use the host network and listen on loopback, so
// no pod network is needed: the node's address is 127.0.0.1. The kubelet
// refuses a loopback --node-ip and then sets no address at all, so the
// supervisor writes the address into the node's status, where it stays.
//
// The node carries the taint synco.coop/real-node=true:NoSchedule and the
// label synco.coop/real-node=true, so that only pods that ask for it land
// there; the kwok nodes stay for the simulated CPU and GPU nodes.
//
// Images are not pulled (there is no registry): tests load what they need
// into the node's containerd (namespace k8s.io) with ctr. The sandbox image is
// a pause binary built with the harness (cmd/pause), loaded at start-up.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

const (
	realNodeName  = "real-0"
	realNodeLabel = "synco.coop/real-node"
	pauseImage    = "localhost/synco-e2e/pause:1"
	// The loopback plugin's folder: Debian's containernetworking-plugins.
	cniBinDir = "/usr/lib/cni"
)

// realNode is what a started real node needs to be stopped and described.
type realNode struct {
	dir       string // RUN_DIR/node
	socket    string // containerd's
	kubelet   int    // the kubelet's API port (127.0.0.1)
	healthz   int
	started   bool
	supervise *supervisor
}

type realNodeInfo struct {
	Name             string `json:"name"`
	ContainerdSocket string `json:"containerdSocket"`
	Namespace        string `json:"containerdNamespace"`
	Dir              string `json:"dir"`
}

// checkRealNodeHost says what this machine lacks for a real node, if anything.
func checkRealNodeHost() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("a real node needs root (containerd and the kubelet mount and make cgroups)")
	}
	for _, tool := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("a real node needs %s (Debian packages containerd and runc): %w", tool, err)
		}
	}
	if _, err := os.Stat(filepath.Join(cniBinDir, "loopback")); err != nil {
		return fmt.Errorf("a real node needs the CNI loopback plugin (Debian package containernetworking-plugins): %w", err)
	}
	return nil
}

func (n *realNode) path(parts ...string) string {
	return filepath.Join(append([]string{n.dir}, parts...)...)
}

// writeConfigs writes containerd's, the CNI's and the kubelet's configuration.
func (n *realNode) writeConfigs(caFile string) error {
	for _, d := range []string{"containerd/root", "containerd/state", "cni", "kubelet"} {
		if err := os.MkdirAll(n.path(d), 0o700); err != nil {
			return err
		}
	}
	containerd := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # Root in this sandbox may not lower a process's OOM score (no
  # CAP_SYS_RESOURCE over its parent's): keep scores at or above containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
`, n.path("containerd/root"), n.path("containerd/state"), n.socket, pauseImage, cniBinDir, n.path("cni"))
	if err := os.WriteFile(n.path("containerd.toml"), []byte(containerd), 0o600); err != nil {
		return err
	}
	// Only the loopback interface: every pod here uses the host network, but the
	// runtime reports its network ready only once some configuration loads.
	cni := `{"cniVersion": "0.4.0", "name": "synco-e2e-loopback", "plugins": [{"type": "loopback"}]}` + "\n"
	if err := os.WriteFile(n.path("cni", "10-loopback.conflist"), []byte(cni), 0o600); err != nil {
		return err
	}
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
failSwapOn: false
# cgroup v1 here, shared with the host's own processes: no QoS hierarchy, no
# node allocatable enforcement, no eviction (the tests bound what they run).
cgroupsPerQOS: false
enforceNodeAllocatable: []
evictionHard: {}
localStorageCapacityIsolation: false
registerWithTaints:
  - {key: %s, value: "true", effect: NoSchedule}
resolvConf: /etc/resolv.conf
serializeImagePulls: false
podLogsDir: %q
`, n.kubelet, n.healthz, caFile, n.socket, realNodeLabel, n.path("pod-logs"))
	return os.WriteFile(n.path("kubelet.yaml"), []byte(kubelet), 0o600)
}

// start brings the node up: containerd, the pause image, the kubelet, and the
// node's address. It returns once the node is Ready.
func (n *realNode) start(ctx context.Context, cs kubernetes.Interface, kubeconfig, caFile, pauseBinary string) error {
	if err := checkRealNodeHost(); err != nil {
		return err
	}
	if err := n.writeConfigs(caFile); err != nil {
		return fmt.Errorf("real node: %w", err)
	}
	// Host-network pods of one Deployment share their port (SO_REUSEPORT) while
	// a rolling update overlaps them; with this, connections waiting in the
	// queue of a pod that stops move to the pod that stays instead of being
	// reset (Linux 5.14 and later; per network namespace, here the host's).
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("real node: net.ipv4.tcp_migrate_req: %w", err)
	}
	n.started = true
	s := n.supervise
	if err := s.startExternal("containerd", "containerd", "--config", n.path("containerd.toml")); err != nil {
		return err
	}
	if err := s.waitFor(ctx, "containerd socket", func() (bool, error) {
		_, err := os.Stat(n.socket)
		return err == nil, nil
	}); err != nil {
		return err
	}
	archive := n.path("pause.tar")
	if err := writeOCIArchive(archive, pauseImage, pauseBinary, "/pause", "65535:65535"); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	if out, err := n.ctr("images", "import", archive).CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", archive, err, out)
	}
	if err := s.start("kubelet",
		"--config="+n.path("kubelet.yaml"),
		"--kubeconfig="+kubeconfig,
		"--root-dir="+n.path("kubelet"),
		"--hostname-override="+realNodeName,
		"--node-ip=127.0.0.1",
		"--node-labels="+realNodeLabel+"=true",
	); err != nil {
		return err
	}
	if err := s.waitFor(ctx, "real node registered", func() (bool, error) {
		_, err := cs.CoreV1().Nodes().Get(ctx, realNodeName, metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"addresses": []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeHostName, Address: realNodeName},
	}}})
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, realNodeName, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("setting the real node's address: %w", err)
	}
	return s.waitFor(ctx, "real node Ready", func() (bool, error) {
		node, err := cs.CoreV1().Nodes().Get(ctx, realNodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(node.Status.Addresses) == 0 || node.Status.Addresses[0].Address != "127.0.0.1" {
			return false, nil
		}
		return nodesReady(ctx, cs, []simNode{{Name: realNodeName}})
	})
}

func (n *realNode) ctr(args ...string) *exec.Cmd {
	return exec.Command("ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...)
}

// stop stops the kubelet, then every pod's containers (the kubelet leaves them
// running when it stops), then containerd, and unmounts what they left mounted
// under the node's folder.
func (n *realNode) stop() {
	if !n.started {
		return
	}
	s := n.supervise
	s.stop(10*time.Second, "kubelet")
	// Each task, killed and deleted; then the containers (and their snapshots).
	if out, err := n.ctr("tasks", "list", "--quiet").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = n.ctr("tasks", "kill", "--signal", "SIGKILL", id).Run()
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, id := range strings.Fields(string(out)) {
			for n.ctr("tasks", "delete", id).Run() != nil && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	if out, err := n.ctr("containers", "list", "--quiet").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = n.ctr("containers", "delete", id).Run()
		}
	}
	s.stop(10*time.Second, "containerd")
	n.unmountAll()
}

// unmountAll detaches every mount under the node's folder, deepest first.
func (n *realNode) unmountAll() {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == n.dir || strings.HasPrefix(fields[4], n.dir+"/")) {
			mounts = append(mounts, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			n.supervise.logf("unmount %s: %v", m, err)
		}
	}
}

// writeOCIArchive writes an OCI image archive (as `ctr images import` reads
// it) of one static binary at path, run as user, named name.
func writeOCIArchive(out, name, binary, path, user string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{
		Name: strings.TrimPrefix(path, "/"), Mode: 0o755, Size: int64(len(bin)),
		ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg,
	}); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	diffID := sha256.Sum256(layer.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layer.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string{path}, "User": user},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return err
	}
	blobs := map[string][]byte{}
	descriptor := func(mediaType string, b []byte) map[string]any {
		sum := sha256.Sum256(b)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		blobs[digest] = b
		return map[string]any{"mediaType": mediaType, "digest": digest, "size": len(b)}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes())},
	})
	if err != nil {
		return err
	}
	m := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	m["annotations"] = map[string]string{"org.opencontainers.image.ref.name": name, "io.containerd.image.name": name}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{m}})
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion": "1.0.0"}`)},
		{"index.json", index},
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		files = append(files, struct {
			name string
			data []byte
		}{"blobs/sha256/" + strings.TrimPrefix(d, "sha256:"), blobs[d]})
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	aw := tar.NewWriter(f)
	for _, file := range files {
		if err := aw.WriteHeader(&tar.Header{Name: file.name, Mode: 0o644, Size: int64(len(file.data)), ModTime: time.Unix(0, 0)}); err != nil {
			_ = f.Close()
			return err
		}
		if _, err := aw.Write(file.data); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := aw.Close(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (n *realNode) info() *realNodeInfo {
	return &realNodeInfo{Name: realNodeName, ContainerdSocket: n.socket, Namespace: "k8s.io", Dir: n.dir}
}
