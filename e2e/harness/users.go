package main

// The identities of a run. Each gets a random bearer token (static token
// authentication, --token-auth-file), a token file and a kubeconfig under
// RUN_DIR/users/. RUN_DIR/kubeconfig is the admin's.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

type userSpec struct {
	file     string // file name under users/, and the key tests use
	name     string // the user name the API server sees
	groups   []string
	isPerson bool // a test identity, listed in cluster.json (components are not)
}

// userList: the admin, five members with no rights of their own (tests grant
// what they need with RoleBindings), the operator and gateway identities, and
// the components.
var userList = []userSpec{
	{"admin", "synco-e2e-admin", []string{"system:masters"}, true},
	{"alice", "alice", []string{"synco:members"}, true},
	{"bob", "bob", []string{"synco:members"}, true},
	{"carol", "carol", []string{"synco:members"}, true},
	{"dave", "dave", []string{"synco:members"}, true},
	{"erin", "erin", []string{"synco:members"}, true},
	{"operator", "synco-operator", []string{"synco:operators"}, true},
	{"gateway", "synco-gateway", []string{"synco:gateways"}, true},
	// Components: the bootstrap RBAC policy already grants these names.
	{"kube-controller-manager", "system:kube-controller-manager", nil, false},
	{"kube-scheduler", "system:kube-scheduler", nil, false},
	{"kwok", "synco-e2e-kwok", []string{"system:masters"}, false},
	// The real node's kubelet, which the Node authorizer and NodeRestriction
	// keep to its own node and its pods.
	{"kubelet", "system:node:" + realNodeName, []string{"system:nodes"}, false},
}

type userInfo struct {
	Key        string   `json:"key"`
	Name       string   `json:"name"`
	Groups     []string `json:"groups"`
	TokenFile  string   `json:"tokenFile"`
	Kubeconfig string   `json:"kubeconfig"`
}

type user struct {
	token string
	info  userInfo
}

func writeUsers(dir, server string, p *pki) (map[string]user, error) {
	users := map[string]user{}
	var csv strings.Builder
	for i, u := range userList {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		token := hex.EncodeToString(raw)
		// token,user,uid,"group1,group2"
		fmt.Fprintf(&csv, "%s,%s,uid-%d,\"%s\"\n", token, u.name, i, strings.Join(u.groups, ","))
		tokenFile := filepath.Join(dir, "users", u.file+".token")
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			return nil, err
		}
		kubeconfig := filepath.Join(dir, "users", u.file+".kubeconfig")
		if u.file == "admin" {
			kubeconfig = filepath.Join(dir, "kubeconfig")
		}
		if err := writeKubeconfig(kubeconfig, server, p.caPEM, u.file, token); err != nil {
			return nil, err
		}
		if u.file == "admin" {
			// Also under users/, so that every identity is found the same way.
			if err := writeKubeconfig(filepath.Join(dir, "users", "admin.kubeconfig"), server, p.caPEM, u.file, token); err != nil {
				return nil, err
			}
		}
		groups := u.groups
		if groups == nil {
			groups = []string{}
		}
		users[u.file] = user{token: token, info: userInfo{
			Key: u.file, Name: u.name, Groups: groups, TokenFile: tokenFile, Kubeconfig: kubeconfig,
		}}
	}
	if err := os.WriteFile(filepath.Join(dir, "users", "tokens.csv"), []byte(csv.String()), 0o600); err != nil {
		return nil, err
	}
	return users, nil
}

func writeKubeconfig(path, server string, ca []byte, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["synco-e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[user+"@synco-e2e"] = &clientcmdapi.Context{Cluster: "synco-e2e", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = user + "@synco-e2e"
	return clientcmd.WriteToFile(*cfg, path)
}
