// pod-security-check evaluates pods against a Pod Security Standard level with the Kubernetes
// release's own checks (k8s.io/pod-security-admission/policy, what the API server's admission
// plugin runs). Input on stdin: a JSON list of {"name", "metadata", "spec"} (a PodSpec). Output on
// stdout: a JSON object mapping each name to its failed checks ([] when it complies).
// Usage: pod-security-check LEVEL VERSION   (e.g. restricted v1.37)
package main

import (
	"encoding/json"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

type pod struct {
	Name     string            `json:"name"`
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     corev1.PodSpec    `json:"spec"`
}

type failure struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pod-security-check LEVEL VERSION")
		os.Exit(2)
	}
	level, err := api.ParseLevel(os.Args[1])
	if err != nil {
		fail(err)
	}
	version, err := api.ParseVersion(os.Args[2])
	if err != nil {
		fail(err)
	}
	var pods []pod
	if err := json.NewDecoder(os.Stdin).Decode(&pods); err != nil {
		fail(err)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fail(err)
	}
	out := map[string][]failure{}
	for _, p := range pods {
		found := []failure{}
		for _, r := range evaluator.EvaluatePod(api.LevelVersion{Level: level, Version: version}, &p.Metadata, &p.Spec) {
			if !r.Allowed {
				found = append(found, failure{r.ForbiddenReason, r.ForbiddenDetail})
			}
		}
		out[p.Name] = found
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pod-security-check:", err)
	os.Exit(2)
}
