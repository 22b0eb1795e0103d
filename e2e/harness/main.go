// Command synco-cluster is a multi-call binary holding a whole local Kubernetes
// control plane for Synco's end-to-end tests: embedded etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok (simulated nodes), a kubelet
// (the real node, with containerd and runc from the host), kubectl and helm. The first argument names the component, or the binary is called
// through a link with that name (bin/kubectl -> synco-cluster).
//
// `synco-cluster supervise --run-dir DIR` starts them all as child processes,
// each with its own flags, and stops them on SIGTERM. e2e/cluster.sh wraps it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// commands maps a sub-command to its entry point. Each receives the arguments
// after the sub-command name and returns the process exit code.
var commands = map[string]func(args []string) int{
	"supervise":               runSupervise,
	"etcd":                    runEtcd,
	"kube-apiserver":          runAPIServer,
	"kube-controller-manager": runControllerManager,
	"kube-scheduler":          runScheduler,
	"kubelet":                 runKubelet,
	"kwok":                    runKwok,
	"kubectl":                 runKubectl,
	"helm":                    runHelm,
	"version":                 runVersion,
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := commands[name]; !ok {
		if len(args) == 0 {
			usage()
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	run, ok := commands[name]
	if !ok {
		usage()
		os.Exit(2)
	}
	// The components parse os.Args themselves in places (kubectl's plugin
	// handling, helm's flag pre-parsing), so present them with the argv they
	// would have had as standalone binaries.
	os.Args = append([]string{name}, args...)
	os.Exit(run(args))
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: synco-cluster <%s> [flags]\n", strings.Join(names, "|"))
}

func runVersion(_ []string) int {
	fmt.Println(versionString())
	return 0
}
