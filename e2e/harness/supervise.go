package main

// The supervisor: prepares a run directory, starts every component as a child
// process of this one (same process group), waits until the cluster is
// usable, writes ready, and stops everything on SIGTERM/SIGINT, when a
// watched process exits, or when a component dies.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	serviceCIDR = "10.96.0.0/16" // bookkeeping only: nothing listens there
	serviceIP   = "10.96.0.1"
	podCIDR     = "10.244.0.1/16" // kwok hands out pod IPs from here; never dialled
)

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

type supervisor struct {
	dir      string
	self     string
	node     *realNode // nil without --real-node
	mu       sync.Mutex
	children []*child
	died     chan *child
	log      *os.File
}

func (s *supervisor) logf(format string, a ...any) {
	fmt.Fprintf(s.log, "%s supervisor: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

// freePorts asks the kernel for n distinct free loopback ports. Holding all
// listeners open until every port is picked keeps them distinct.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts the named component of this binary.
func (s *supervisor) start(name string, args ...string) error {
	return s.startExternal(name, s.self, append([]string{name}, args...)...)
}

// startExternal starts another program (containerd) as the component name.
func (s *supervisor) startExternal(name, program string, args ...string) error {
	logPath := filepath.Join(s.dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(program, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Dir = s.dir
	// Children stay in the supervisor's process group (cluster.sh down kills
	// the group as a backstop) and die with the supervisor even if it is
	// SIGKILLed. Pdeathsig follows the starting OS thread, so the supervisor
	// starts children only from its locked main thread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	s.logf("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	go func() {
		c.err = cmd.Wait()
		_ = f.Close()
		close(c.done)
		select {
		case s.died <- c:
		default:
		}
	}()
	return nil
}

// stop sends SIGTERM to the named children, waits up to grace for them, then
// SIGKILLs what is left.
func (s *supervisor) stop(grace time.Duration, names ...string) {
	s.mu.Lock()
	var targets []*child
	for _, c := range s.children {
		for _, n := range names {
			if c.name == n {
				targets = append(targets, c)
			}
		}
	}
	s.mu.Unlock()
	for _, c := range targets {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, c := range targets {
		select {
		case <-c.done:
		case <-deadline:
			s.logf("%s did not stop within %s: SIGKILL", c.name, grace)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

func (s *supervisor) stopAll() {
	if s.node != nil {
		s.node.stop()
	}
	s.stop(10*time.Second, "kwok", "kube-scheduler", "kube-controller-manager")
	s.stop(15*time.Second, "kube-apiserver")
	s.stop(10*time.Second, "etcd")
}

// waitHTTP polls url until it answers 200 or ctx ends.
func (s *supervisor) waitHTTP(ctx context.Context, client *http.Client, url, token string) error {
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %s", url, last)
		case c := <-s.died:
			return fmt.Errorf("%s exited while waiting for %s: %v", c.name, url, c.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type clusterInfo struct {
	RunDir     string            `json:"runDir"`
	Server     string            `json:"server"`
	CAFile     string            `json:"caFile"`
	Kubeconfig string            `json:"kubeconfig"`
	Version    string            `json:"version"`
	Pid        int               `json:"supervisorPid"`
	Ports      map[string]int    `json:"ports"`
	Users      []userInfo        `json:"users"`
	Nodes      []nodeInfo        `json:"nodes"`
	RealNode   *realNodeInfo     `json:"realNode,omitempty"`
	Logs       map[string]string `json:"logs"`
}

func runSupervise(args []string) int {
	// Children are started from this thread only (see start).
	runtime.LockOSThread()

	fs := flag.NewFlagSet("supervise", flag.ContinueOnError)
	dir := fs.String("run-dir", "", "run directory (created; must be empty or absent)")
	watchPid := fs.Int("watch-pid", 0, "stop the cluster when this process exits (0: never)")
	timeout := fs.Duration("ready-timeout", 3*time.Minute, "give up if the cluster is not ready by then")
	withNode := fs.Bool("real-node", false, "also run a real node: a kubelet with containerd and runc (root)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "supervise: --run-dir is required")
		return 2
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "supervise:", err)
		return 2
	}
	for _, sub := range []string{"logs", "pki", "users", "etcd", "kcm", "scheduler"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o700); err != nil {
			fmt.Fprintln(os.Stderr, "supervise:", err)
			return 1
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "supervise:", err)
		return 1
	}
	s := &supervisor{dir: abs, self: self, died: make(chan *child, 8), log: os.Stderr}
	if *withNode {
		ports, err := freePorts(2)
		if err != nil {
			fmt.Fprintln(os.Stderr, "supervise:", err)
			return 1
		}
		dir := filepath.Join(abs, "node")
		s.node = &realNode{dir: dir, socket: filepath.Join(dir, "containerd", "containerd.sock"),
			kubelet: ports[0], healthz: ports[1], supervise: s}
	}
	_ = os.Remove(filepath.Join(abs, "ready"))
	_ = os.Remove(filepath.Join(abs, "failed"))
	if err := os.WriteFile(filepath.Join(abs, "supervisor.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		s.logf("%v", err)
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	// Stop waiting as soon as we are told to stop.
	go func() {
		select {
		case sig := <-sigs:
			s.logf("got %s during start-up", sig)
			cancel()
			sigs <- sig // handled again below
		case <-ctx.Done():
		}
	}()
	info, err := s.bringUp(ctx, abs)
	readyCtxErr := ctx.Err()
	cancel()
	if err != nil || readyCtxErr != nil {
		if err == nil {
			err = readyCtxErr
		}
		s.logf("start-up failed: %v", err)
		_ = os.WriteFile(filepath.Join(abs, "failed"), []byte(err.Error()+"\n"), 0o644)
		s.stopAll()
		return 1
	}
	info.Pid = os.Getpid()
	if err := writeJSON(filepath.Join(abs, "cluster.json"), info); err != nil {
		s.logf("%v", err)
		s.stopAll()
		return 1
	}
	if err := writeEnv(filepath.Join(abs, "env"), info); err != nil {
		s.logf("%v", err)
		s.stopAll()
		return 1
	}
	// ready is written last and atomically: its presence means usable.
	if err := atomicWrite(filepath.Join(abs, "ready"), []byte(time.Since(started).String()+"\n")); err != nil {
		s.logf("%v", err)
		s.stopAll()
		return 1
	}
	s.logf("cluster ready in %s: %s", time.Since(started).Round(time.Millisecond), info.Server)

	var watch <-chan time.Time
	if *watchPid > 0 {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		watch = t.C
	}
	code := 0
loop:
	for {
		select {
		case sig := <-sigs:
			s.logf("got %s: stopping", sig)
			break loop
		case c := <-s.died:
			s.logf("%s exited unexpectedly (%v): stopping; see logs/%s.log", c.name, c.err, c.name)
			_ = os.WriteFile(filepath.Join(abs, "failed"), []byte(c.name+" exited\n"), 0o644)
			code = 1
			break loop
		case <-watch:
			if syscall.Kill(*watchPid, 0) == syscall.ESRCH {
				s.logf("watched process %d is gone: stopping", *watchPid)
				break loop
			}
		}
	}
	_ = os.Remove(filepath.Join(abs, "ready"))
	s.stopAll()
	s.logf("stopped")
	return code
}

func (s *supervisor) bringUp(ctx context.Context, dir string) (*clusterInfo, error) {
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	users, err := writeUsers(dir, server, p)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	kc := func(name string) string { return filepath.Join(dir, "users", name+".kubeconfig") }

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	if err := s.start("etcd",
		"--data-dir="+filepath.Join(dir, "etcd", "data"),
		"--listen-client-url="+etcdURL,
		fmt.Sprintf("--listen-peer-url=http://127.0.0.1:%d", etcdPeer),
	); err != nil {
		return nil, err
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := s.waitHTTP(ctx, plain, etcdURL+"/health", ""); err != nil {
		return nil, err
	}
	s.logf("etcd ready")

	if err := s.start("kube-apiserver",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--etcd-servers="+etcdURL,
		"--tls-cert-file="+p.ServingCert,
		"--tls-private-key-file="+p.ServingKey,
		"--client-ca-file="+p.CACert,
		"--token-auth-file="+filepath.Join(dir, "users", "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		// ValidatingAdmissionPolicy is GA and on by default in 1.34; naming
		// it here documents that the tests rely on it.
		"--enable-admission-plugins=NodeRestriction,ValidatingAdmissionPolicy",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.SAPub,
		"--service-account-signing-key-file="+p.SAKey,
		"--service-cluster-ip-range="+serviceCIDR,
		// The "kubernetes" Service would get 127.0.0.1 as endpoint, which
		// Endpoints validation refuses; nothing in-cluster dials it anyway.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir="+filepath.Join(dir, "pki"),
	); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	admin := users["admin"]
	if err := s.waitHTTP(ctx, tlsClient, server+"/readyz", admin.token); err != nil {
		return nil, err
	}
	s.logf("kube-apiserver ready")

	common := func(name string) []string {
		return []string{
			"--kubeconfig=" + kc(name),
			"--authentication-kubeconfig=" + kc(name),
			"--authorization-kubeconfig=" + kc(name),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
			// The default client rate limit (20 QPS) paces the controller
			// manager's start-up, which creates an account and token per
			// controller; nothing else shares this API server.
			"--kube-api-qps=200",
			"--kube-api-burst=400",
		}
	}
	if err := s.start("kube-controller-manager", append(common("kube-controller-manager"),
		fmt.Sprintf("--secure-port=%d", kcmPort),
		"--cert-dir="+filepath.Join(dir, "kcm"),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+p.SAKey,
		"--root-ca-file="+p.CACert,
		"--cluster-signing-cert-file="+p.CACert,
		"--cluster-signing-key-file="+p.CAKey,
		"--service-cluster-ip-range="+serviceCIDR,
		"--profiling=false",
	)...); err != nil {
		return nil, err
	}
	if err := s.start("kube-scheduler", append(common("kube-scheduler"),
		fmt.Sprintf("--secure-port=%d", schedPort),
		"--cert-dir="+filepath.Join(dir, "scheduler"),
		"--profiling=false",
	)...); err != nil {
		return nil, err
	}
	if err := s.start("kwok",
		"--kubeconfig="+kc("kwok"),
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		"--cidr="+podCIDR,
		"--node-ip=10.240.0.1",
	); err != nil {
		return nil, err
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	nodes := defaultNodes()
	if err := createNodes(ctx, cs, nodes); err != nil {
		return nil, fmt.Errorf("create nodes: %w", err)
	}
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		// Each component serves loopback with its own self-signed certificate.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe only
	}}
	if err := s.waitHTTP(ctx, insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort), ""); err != nil {
		return nil, err
	}
	if err := s.waitHTTP(ctx, insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", schedPort), ""); err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, "nodes Ready", func() (bool, error) { return nodesReady(ctx, cs, nodes) }); err != nil {
		return nil, err
	}
	// The default ServiceAccount appears once the controller manager's
	// controllers run; pods cannot be admitted into a namespace before it.
	if err := s.waitFor(ctx, "default ServiceAccount", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		return nil, err
	}

	info := &clusterInfo{
		RunDir:     dir,
		Server:     server,
		CAFile:     p.CACert,
		Kubeconfig: filepath.Join(dir, "kubeconfig"),
		Ports: map[string]int{
			"etcd": etcdClient, "etcdPeer": etcdPeer, "apiserver": apiPort,
			"controllerManager": kcmPort, "scheduler": schedPort,
		},
		Logs: map[string]string{},
	}
	if v, err := cs.Discovery().ServerVersion(); err == nil {
		info.Version = v.GitVersion
	}
	for _, n := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		info.Logs[n] = filepath.Join(dir, "logs", n+".log")
	}
	if s.node != nil {
		pause := filepath.Join(filepath.Dir(s.self), "pause")
		if err := s.node.start(ctx, cs, kc("kubelet"), p.CACert, pause); err != nil {
			return nil, fmt.Errorf("real node: %w", err)
		}
		info.RealNode = s.node.info()
		info.Ports["kubelet"] = s.node.kubelet
		info.Logs["kubelet"] = filepath.Join(dir, "logs", "kubelet.log")
		info.Logs["containerd"] = filepath.Join(dir, "logs", "containerd.log")
	}
	for _, u := range userList {
		if u.isPerson {
			info.Users = append(info.Users, users[u.file].info)
		}
	}
	for _, n := range nodes {
		info.Nodes = append(info.Nodes, n.info())
	}
	return info, nil
}

func (s *supervisor) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			s.logf("%s", what)
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
		case c := <-s.died:
			return fmt.Errorf("%s exited while waiting for %s: %v", c.name, what, c.err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func nodesReady(ctx context.Context, cs kubernetes.Interface, want []simNode) (bool, error) {
	for _, w := range want {
		n, err := cs.CoreV1().Nodes().Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return false, nil
		}
		for _, t := range n.Spec.Taints {
			if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
				return false, nil
			}
		}
	}
	return true, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicWrite(path, append(b, '\n'))
}

func writeEnv(path string, info *clusterInfo) error {
	var b strings.Builder
	fmt.Fprintf(&b, "KUBECONFIG=%s\n", info.Kubeconfig)
	fmt.Fprintf(&b, "SYNCO_E2E_RUN_DIR=%s\n", info.RunDir)
	fmt.Fprintf(&b, "SYNCO_E2E_SERVER=%s\n", info.Server)
	return atomicWrite(path, []byte(b.String()))
}

func atomicWrite(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}
