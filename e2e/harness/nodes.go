package main

// The simulated nodes. kwok manages every node with the kwok annotation: it
// marks them Ready, keeps their leases, and moves pods bound to them to
// Running and Ready. GPU nodes carry the labels NVIDIA's GPU feature
// discovery would set, the device plugin's nvidia.com/gpu resource, and the
// taint GPU node pools usually have, so that only pods that tolerate it land
// there.

import (
	"context"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	gpuResource        = "nvidia.com/gpu"
)

type simNode struct {
	Name       string
	CPU        string
	Memory     string
	GPUs       int
	GPUProduct string
	GPUMemory  string // MiB, as GPU feature discovery labels it
}

type nodeInfo struct {
	Name       string `json:"name"`
	GPUs       int    `json:"gpus"`
	GPUProduct string `json:"gpuProduct,omitempty"`
}

func (n simNode) info() nodeInfo {
	return nodeInfo{Name: n.Name, GPUs: n.GPUs, GPUProduct: n.GPUProduct}
}

// defaultNodes: two CPU nodes and two GPU nodes of different sizes, so that a
// test can fill one GPU node and see that a request still fitting the other's
// capacity, but not its free GPUs, stays Pending.
func defaultNodes() []simNode {
	return []simNode{
		{Name: "kwok-cpu-0", CPU: "16", Memory: "64Gi"},
		{Name: "kwok-cpu-1", CPU: "16", Memory: "64Gi"},
		{Name: "kwok-gpu-0", CPU: "32", Memory: "256Gi", GPUs: 4, GPUProduct: "NVIDIA-A100-SXM4-80GB", GPUMemory: "81920"},
		{Name: "kwok-gpu-1", CPU: "16", Memory: "128Gi", GPUs: 2, GPUProduct: "NVIDIA-L4", GPUMemory: "23034"},
	}
}

func (n simNode) object() *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":           n.Name,
		"kubernetes.io/os":                 "linux",
		"kubernetes.io/arch":               "amd64",
		"node.kubernetes.io/instance-type": "kwok",
		"type":                             "kwok",
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse(n.CPU),
		corev1.ResourceMemory:           resource.MustParse(n.Memory),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("500Gi"),
	}
	var taints []corev1.Taint
	if n.GPUs > 0 {
		labels["nvidia.com/gpu.present"] = "true"
		labels["nvidia.com/gpu.product"] = n.GPUProduct
		labels["nvidia.com/gpu.count"] = strconv.Itoa(n.GPUs)
		labels["nvidia.com/gpu.memory"] = n.GPUMemory
		res[gpuResource] = *resource.NewQuantity(int64(n.GPUs), resource.DecimalSI)
		taints = append(taints, corev1.Taint{Key: gpuResource, Value: "present", Effect: corev1.TaintEffectNoSchedule})
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Name,
			Labels:      labels,
			Annotations: map[string]string{kwokNodeAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{
			Capacity:    res,
			Allocatable: res,
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:    "amd64",
				OperatingSystem: "linux",
			},
		},
	}
}

func createNodes(ctx context.Context, cs kubernetes.Interface, nodes []simNode) error {
	for _, n := range nodes {
		_, err := cs.CoreV1().Nodes().Create(ctx, n.object(), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}
