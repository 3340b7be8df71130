// Package deploy holds no code: its test checks that the files in deploy/
// would run (see deploy/README.md).
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gridbell/gridbell/internal/config"
)

// tool returns the path of a command, or skips (fails with CI=true).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// TestConfigs: each gridbell.yaml in deploy/ loads, with placeholder
// secrets where it expects them from the environment.
func TestConfigs(t *testing.T) {
	env := []string{
		"GRIDBELL_STORE_DSN=postgres://gridbell:x@db/gridbell",
		"GRIDBELL_AUTH_TOKENS=placeholder-admin-token-0123:admin",
		"GRIDBELL_SMS_TWILIO_AUTH_TOKEN=placeholder",
	}
	for _, f := range []string{"compose/gridbell.yaml", "systemd/gridbell.yaml"} {
		if _, err := config.Load(f, env); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	cm := decodeK8s[corev1.ConfigMap](t, "k8s/configmap.yaml")
	f := filepath.Join(t.TempDir(), "gridbell.yaml")
	os.WriteFile(f, []byte(cm.Data["gridbell.yaml"]), 0o600)
	if _, err := config.Load(f, env); err != nil {
		t.Errorf("k8s/configmap.yaml gridbell.yaml: %v", err)
	}
}

// decodeK8s reads a manifest strictly: a field the type lacks fails.
func decodeK8s[T any](t *testing.T, path string) *T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	v := new(T)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s does not decode strictly: %v", path, err)
	}
	return v
}

// TestKubernetes: the manifests decode strictly into the k8s.io/api types,
// kustomization lists files that exist, and the Deployment runs one
// instance of single-process mode with a Recreate strategy; its volumes
// and probes point at what exists.
func TestKubernetes(t *testing.T) {
	var kust struct {
		Resources []string `json:"resources"`
	}
	b, _ := os.ReadFile("k8s/kustomization.yaml")
	if err := yaml.Unmarshal(b, &kust); err != nil || len(kust.Resources) == 0 {
		t.Fatalf("k8s/kustomization.yaml: %v", err)
	}
	kinds := map[string]func(string){
		"Namespace":  func(p string) { decodeK8s[corev1.Namespace](t, p) },
		"ConfigMap":  func(p string) { decodeK8s[corev1.ConfigMap](t, p) },
		"Secret":     func(p string) { decodeK8s[corev1.Secret](t, p) },
		"Service":    func(p string) { decodeK8s[corev1.Service](t, p) },
		"Deployment": func(p string) { decodeK8s[appsv1.Deployment](t, p) },
	}
	for _, r := range kust.Resources {
		p := filepath.Join("k8s", r)
		var meta struct{ Kind string }
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("kustomization names %s: %v", r, err)
			continue
		}
		yaml.Unmarshal(b, &meta)
		check, ok := kinds[meta.Kind]
		if !ok {
			t.Errorf("%s: kind %q has no check here", p, meta.Kind)
			continue
		}
		check(p)
	}
	d := decodeK8s[appsv1.Deployment](t, "k8s/deployment.yaml")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		n := "default"
		if d.Spec.Replicas != nil {
			n = strconv.Itoa(int(*d.Spec.Replicas))
		}
		t.Errorf("deployment runs %s replicas with strategy %q; single-process mode needs 1 and Recreate", n, d.Spec.Strategy.Type)
	}
	svc := decodeK8s[corev1.Service](t, "k8s/service.yaml")
	c := d.Spec.Template.Spec.Containers[0]
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, p := range svc.Spec.Ports {
		if !ports[p.TargetPort.String()] && !ports[p.Name] {
			t.Errorf("service port %s targets %s, which the container does not name", p.Name, p.TargetPort.String())
		}
	}
	for _, e := range c.Env {
		if e.Name == "GRIDBELL_MQTT_CLIENT_ID" {
			t.Error("a per-pod MQTT client id loses the broker session on every restart")
		}
	}
	cm := decodeK8s[corev1.ConfigMap](t, "k8s/configmap.yaml")
	cfgPath := filepath.Join(t.TempDir(), "gridbell.yaml")
	os.WriteFile(cfgPath, []byte(cm.Data["gridbell.yaml"]), 0o600)
	cfg, err := config.Load(cfgPath, []string{"GRIDBELL_STORE_DSN=postgres://x@db/g", "GRIDBELL_AUTH_TOKENS=placeholder-admin-token-0123:admin", "GRIDBELL_SMS_TWILIO_AUTH_TOKEN=x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.SharedGroup != "" || cfg.MQTT.ClientID == "" {
		t.Errorf("one instance wants no shared group and a fixed client id: shared_group %q, client_id %q", cfg.MQTT.SharedGroup, cfg.MQTT.ClientID)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "gridbell-contacts" && !strings.HasPrefix(cfg.ContactsFile, mounts[v.Name]+"/") {
			t.Errorf("contacts_file %s is not under the contacts volume's mount %s", cfg.ContactsFile, mounts[v.Name])
		}
	}
	if cfg.DataDir != mounts["data"] {
		t.Errorf("data_dir %s is not the data volume's mount %s", cfg.DataDir, mounts["data"])
	}
}

// TestSystemdUnit: systemd-analyze verify accepts the unit without a
// warning; the config it installs is readable by its DynamicUser; its
// Documentation= is a file its install lines put there, from the repo.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("systemd/gridbell.service")
	if err != nil {
		t.Fatal(err)
	}
	installs := map[string]string{} // destination → mode
	for _, m := range regexp.MustCompile(`(?m)^#\s+install (?:-D )?-m (\d+) (\S+) (\S+)`).FindAllStringSubmatch(string(unit), -1) {
		installs[m[3]] = m[1]
		if m[2] != "/dev/null" && !strings.HasPrefix(m[2], "gridbell") {
			if _, err := os.Stat(filepath.Join("..", m[2])); err != nil {
				t.Errorf("the unit installs %s, which the repository lacks", m[2])
			}
		}
	}
	mode, ok := installs["/etc/gridbell/gridbell.yaml"]
	if m, _ := strconv.ParseUint(mode, 8, 32); !ok || m&0o004 == 0 {
		t.Errorf("gridbell.yaml installed with mode %q: the DynamicUser, neither its owner nor in its group, cannot read it", mode)
	}
	doc := regexp.MustCompile(`(?m)^Documentation=file:(\S+)`).FindStringSubmatch(string(unit))
	if doc == nil || installs[doc[1]] == "" {
		t.Errorf("Documentation= %v names no file the install lines install (%v)", doc, installs)
	}

	sa := tool(t, "systemd-analyze")
	dir := t.TempDir()
	bin := filepath.Join(dir, "gridbell")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755) // verify checks ExecStart is executable
	u := filepath.Join(dir, "gridbell.service")
	os.WriteFile(u, bytes.ReplaceAll(unit, []byte("/usr/local/bin/gridbell"), []byte(bin)), 0o644)
	out, err := exec.Command(sa, "verify", "--man=no", u).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestContainer: the image exposes no port of the loopback-only embedded
// broker; compose runs one gridbell, and docker compose accepts the file
// where the plugin is installed.
func TestContainer(t *testing.T) {
	df, _ := os.ReadFile("Dockerfile")
	for _, m := range regexp.MustCompile(`(?m)^EXPOSE (.*)$`).FindAllStringSubmatch(string(df), -1) {
		if strings.Contains(m[1], "1884") {
			t.Errorf("Dockerfile exposes 1884, the embedded broker's loopback port: %s", m[0])
		}
	}
	var compose struct {
		Services map[string]struct {
			Image  string         `json:"image"`
			Scale  *int           `json:"scale"`
			Deploy map[string]any `json:"deploy"`
		} `json:"services"`
	}
	b, _ := os.ReadFile("compose/docker-compose.yaml")
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	g, ok := compose.Services["gridbell"]
	if !ok {
		t.Fatal("compose has no gridbell service")
	}
	if g.Scale != nil && *g.Scale != 1 || fmt.Sprint(g.Deploy["replicas"]) != "<nil>" && fmt.Sprint(g.Deploy["replicas"]) != "1" {
		t.Errorf("compose runs gridbell with scale %v, deploy %v: single-process mode runs one", g.Scale, g.Deploy)
	}
	docker, err := exec.LookPath("docker")
	if err != nil || exec.Command(docker, "compose", "version").Run() != nil {
		t.Skip("docker compose is not installed: the file was checked above only")
	}
	if out, err := exec.Command(docker, "compose", "-f", "compose/docker-compose.yaml", "config", "-q").CombinedOutput(); err != nil {
		t.Errorf("docker compose config: %v\n%s", err, out)
	}
}
