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
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
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

// TestConfigs: each gridbell.yaml in deploy/ loads (the cluster ones with
// cluster.enabled), with placeholder secrets where it expects them from the
// environment.
func TestConfigs(t *testing.T) {
	env := []string{
		"GRIDBELL_STORE_DSN=postgres://gridbell:x@db/gridbell",
		"GRIDBELL_AUTH_TOKENS=placeholder-admin-token-0123:admin",
		"GRIDBELL_SMS_TWILIO_AUTH_TOKEN=placeholder",
	}
	for _, f := range []string{"compose/gridbell.yaml", "compose/gridbell-cluster.yaml", "systemd/gridbell.yaml"} {
		if _, err := config.Load(f, env); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, p := range []string{"k8s/configmap.yaml", "k8s/cluster/configmap.yaml"} {
		cm := decodeK8s[corev1.ConfigMap](t, p)
		f := filepath.Join(t.TempDir(), "gridbell.yaml")
		os.WriteFile(f, []byte(cm.Data["gridbell.yaml"]), 0o600)
		if _, err := config.Load(f, env); err != nil {
			t.Errorf("%s gridbell.yaml: %v", p, err)
		}
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

// kustomization reads dir/kustomization.yaml and decodes strictly every
// resource it lists into the k8s.io/api type of its kind; it returns the
// resources' paths by kind.
func kustomization(t *testing.T, dir string) map[string][]string {
	t.Helper()
	var kust struct {
		Resources []string `json:"resources"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err := yaml.Unmarshal(b, &kust); err != nil || len(kust.Resources) == 0 {
		t.Fatalf("%s/kustomization.yaml lists no resources: %v", dir, err)
	}
	kinds := map[string]func(string){
		"Namespace":           func(p string) { decodeK8s[corev1.Namespace](t, p) },
		"ConfigMap":           func(p string) { decodeK8s[corev1.ConfigMap](t, p) },
		"Secret":              func(p string) { decodeK8s[corev1.Secret](t, p) },
		"Service":             func(p string) { decodeK8s[corev1.Service](t, p) },
		"Deployment":          func(p string) { decodeK8s[appsv1.Deployment](t, p) },
		"StatefulSet":         func(p string) { decodeK8s[appsv1.StatefulSet](t, p) },
		"PodDisruptionBudget": func(p string) { decodeK8s[policyv1.PodDisruptionBudget](t, p) },
	}
	out := map[string][]string{}
	for _, r := range kust.Resources {
		p := filepath.Join(dir, r)
		var meta struct{ Kind string }
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s/kustomization.yaml names %s: %v", dir, r, err)
			continue
		}
		yaml.Unmarshal(b, &meta)
		check, ok := kinds[meta.Kind]
		if !ok {
			t.Errorf("%s: kind %q has no check here", p, meta.Kind)
			continue
		}
		check(p)
		out[meta.Kind] = append(out[meta.Kind], p)
	}
	// kustomize itself, where kubectl is installed (CI does not install it):
	// it refuses, for one, a file outside the folder.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		built, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize %s: %v\n%s", dir, err, built)
		} else if n := len(regexp.MustCompile(`(?m)^kind: `).FindAll(built, -1)); n != len(kust.Resources) {
			t.Errorf("kubectl kustomize %s builds %d objects from %d resources", dir, n, len(kust.Resources))
		}
	}
	return out
}

// TestKubernetes: the manifests decode strictly into the k8s.io/api types,
// kustomization lists files that exist, and the Deployment runs one
// instance of single-process mode with a Recreate strategy; its volumes
// and probes point at what exists.
func TestKubernetes(t *testing.T) {
	kustomization(t, "k8s")
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

// TestKubernetesCluster: deploy/k8s/cluster runs distributed mode. Its
// manifests decode strictly; the StatefulSet runs several instances with
// the Deployment's probes, grace period and security context, and gives each
// pod its own name as cluster.instance and MQTT client id; its config loads
// with cluster enabled and a shared group, for every pod, with the Secret
// it names; its Services and PodDisruptionBudget select its pods.
func TestKubernetesCluster(t *testing.T) {
	res := kustomization(t, "k8s/cluster")
	if len(res["StatefulSet"]) != 1 {
		t.Fatalf("k8s/cluster has %d StatefulSets, want 1", len(res["StatefulSet"]))
	}
	if len(res["Deployment"]) != 0 || len(res["Secret"]) != 0 {
		t.Errorf("k8s/cluster lists Deployments %v and Secrets %v: it replaces the single-process Deployment and uses the Secret of k8s/secret.yaml", res["Deployment"], res["Secret"])
	}
	ss := decodeK8s[appsv1.StatefulSet](t, res["StatefulSet"][0])
	replicas := int32(1)
	if ss.Spec.Replicas != nil {
		replicas = *ss.Spec.Replicas
	}
	if replicas < 3 {
		t.Errorf("the StatefulSet runs %d replicas: distributed mode here runs 3, so that one can die", replicas)
	}
	if ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: the instances may start together, and ordered start would hold all of them behind the first one's readiness", ss.Spec.PodManagementPolicy)
	}
	if ss.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		t.Error("updateStrategy OnDelete: distributed mode rolls pods one at a time")
	}
	pod := ss.Spec.Template
	if !selects(ss.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("the StatefulSet's selector %v does not select its pods %v", ss.Spec.Selector.MatchLabels, pod.Labels)
	}

	// As the single-process Deployment: grace period, security, probes.
	d := decodeK8s[appsv1.Deployment](t, "k8s/deployment.yaml")
	dc, c := d.Spec.Template.Spec.Containers[0], pod.Spec.Containers[0]
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g != 60 {
		t.Errorf("terminationGracePeriodSeconds %s, want 60", fmtPtr(g))
	}
	if !reflect.DeepEqual(pod.Spec.SecurityContext, d.Spec.Template.Spec.SecurityContext) || !reflect.DeepEqual(c.SecurityContext, dc.SecurityContext) {
		t.Errorf("the StatefulSet's security context differs from the Deployment's:\npod %+v\ncontainer %+v", pod.Spec.SecurityContext, c.SecurityContext)
	}
	for name, p := range map[string][2]*corev1.Probe{
		"readiness": {c.ReadinessProbe, dc.ReadinessProbe},
		"liveness":  {c.LivenessProbe, dc.LivenessProbe},
		"startup":   {c.StartupProbe, dc.StartupProbe},
	} {
		if p[0] == nil || !reflect.DeepEqual(p[0], p[1]) {
			t.Errorf("%s probe %+v differs from the Deployment's %+v", name, p[0], p[1])
		}
	}
	if c.ReadinessProbe != nil && (c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz") {
		t.Errorf("readiness probe %+v is not /readyz", c.ReadinessProbe)
	}

	// The pod's name is its instance name and its MQTT client id.
	fromName := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			fromName[e.Name] = true
		}
	}
	for _, k := range []string{"GRIDBELL_CLUSTER_INSTANCE", "GRIDBELL_MQTT_CLIENT_ID"} {
		if !fromName[k] {
			t.Errorf("%s is not the pod's name (downward API metadata.name): instances would share a name or lose their MQTT session at each restart", k)
		}
	}

	// Its Secret is the one of k8s/secret.yaml.
	secret := decodeK8s[corev1.Secret](t, "k8s/secret.yaml")
	var secretEnv []string
	for _, ef := range c.EnvFrom {
		if ef.SecretRef == nil {
			continue
		}
		if ef.SecretRef.Name != secret.Name {
			t.Errorf("the StatefulSet loads Secret %q; k8s/secret.yaml defines %q", ef.SecretRef.Name, secret.Name)
		}
		for k, v := range secret.StringData {
			secretEnv = append(secretEnv, k+"="+v)
		}
	}
	if secretEnv == nil {
		t.Fatal("the StatefulSet loads no Secret: the DSN and tokens must come from one")
	}

	// Its config, as each pod sees it.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var cfgMap string
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && mounts[v.Name] != "" && strings.HasSuffix(c.Args[len(c.Args)-1], mounts[v.Name]+"/gridbell.yaml") {
			cfgMap = v.ConfigMap.Name
		}
	}
	var data string
	for _, p := range res["ConfigMap"] {
		if cm := decodeK8s[corev1.ConfigMap](t, p); cm.Name == cfgMap {
			data = cm.Data["gridbell.yaml"]
		}
	}
	if data == "" {
		t.Fatalf("the StatefulSet reads its config from ConfigMap %q, which k8s/cluster does not define (args %v)", cfgMap, c.Args)
	}
	if single := decodeK8s[corev1.ConfigMap](t, "k8s/configmap.yaml"); single.Name == cfgMap {
		t.Errorf("the cluster's ConfigMap is named %q like the single-process one: applying one overwrites the other", cfgMap)
	}
	cfgPath := filepath.Join(t.TempDir(), "gridbell.yaml")
	os.WriteFile(cfgPath, []byte(data), 0o600)
	instances, clients := map[string]bool{}, map[string]bool{}
	for i := range int(replicas) {
		podName := fmt.Sprintf("%s-%d", ss.Name, i)
		env := append([]string{"GRIDBELL_CLUSTER_INSTANCE=" + podName, "GRIDBELL_MQTT_CLIENT_ID=" + podName}, secretEnv...)
		cfg, err := config.Load(cfgPath, env)
		if err != nil {
			t.Fatalf("the cluster config with the Secret's placeholders, as pod %s: %v", podName, err)
		}
		if !cfg.Cluster.Enabled || cfg.MQTT.SharedGroup == "" {
			t.Errorf("pod %s runs with cluster.enabled %v, mqtt.shared_group %q", podName, cfg.Cluster.Enabled, cfg.MQTT.SharedGroup)
		}
		instances[cfg.Cluster.Instance], clients[cfg.MQTT.ClientID] = true, true
		if cfg.DataDir != mounts["data"] {
			t.Errorf("data_dir %s is not the data volume's mount %s", cfg.DataDir, mounts["data"])
		}
		for _, v := range pod.Spec.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == "gridbell-contacts" && !strings.HasPrefix(cfg.ContactsFile, mounts[v.Name]+"/") {
				t.Errorf("contacts_file %s is not under the contacts volume's mount %s", cfg.ContactsFile, mounts[v.Name])
			}
		}
	}
	if len(instances) != int(replicas) || len(clients) != int(replicas) {
		t.Errorf("%d pods run as %d instance names %v and %d MQTT client ids %v", replicas, len(instances), instances, len(clients), clients)
	}

	// Services: one headless, the StatefulSet's; all select its pods on named ports.
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	governing := false
	for _, p := range res["Service"] {
		svc := decodeK8s[corev1.Service](t, p)
		if !selects(svc.Spec.Selector, pod.Labels) {
			t.Errorf("%s selects %v, not the StatefulSet's pods %v", p, svc.Spec.Selector, pod.Labels)
		}
		for _, sp := range svc.Spec.Ports {
			if !ports[sp.TargetPort.String()] {
				t.Errorf("%s port %s targets %s, which the container does not name", p, sp.Name, sp.TargetPort.String())
			}
		}
		if svc.Name == ss.Spec.ServiceName {
			governing = svc.Spec.ClusterIP == corev1.ClusterIPNone
		}
	}
	if !governing {
		t.Errorf("serviceName %q is not a headless Service of k8s/cluster", ss.Spec.ServiceName)
	}

	if len(res["PodDisruptionBudget"]) != 1 {
		t.Fatalf("k8s/cluster has %d PodDisruptionBudgets, want 1", len(res["PodDisruptionBudget"]))
	}
	pdb := decodeK8s[policyv1.PodDisruptionBudget](t, res["PodDisruptionBudget"][0])
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("the PodDisruptionBudget does not select the StatefulSet's pods")
	}
	if m := pdb.Spec.MinAvailable; m == nil || m.IntValue() < 2 || m.IntValue() >= int(replicas) {
		t.Errorf("PodDisruptionBudget minAvailable %v: want at least 2 and fewer than the %d replicas (or no drain can proceed)", m, replicas)
	}
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// selects reports whether a label selector's matchLabels picks labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// composeService is what the tests read of a compose service.
type composeService struct {
	Image       string            `json:"image"`
	Command     any               `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	Volumes     []string          `json:"volumes"`
	DependsOn   map[string]any    `json:"depends_on"`
	Profiles    []string          `json:"profiles"`
	Scale       *int              `json:"scale"`
	Deploy      map[string]any    `json:"deploy"`
}

// TestComposeCluster: compose/docker-compose.cluster.yaml runs three
// gridbell instances in distributed mode next to Kafka in KRaft mode,
// PostgreSQL, Mosquitto and InfluxDB: each loads its config with cluster
// enabled and a shared group, under its own instance name, MQTT client id
// and data volume; the host ports are distinct; the meter topic is created
// before the instances start; docker compose accepts the file where the
// plugin is installed.
func TestComposeCluster(t *testing.T) {
	const file = "compose/docker-compose.cluster.yaml"
	var compose struct {
		Name     string                    `json:"name"`
		Services map[string]composeService `json:"services"`
		Volumes  map[string]any            `json:"volumes"`
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	if compose.Name == "" || compose.Name == "gridbell" {
		t.Errorf("project name %q: the cluster needs its own, so it does not share the single-process compose's volumes", compose.Name)
	}
	for _, n := range []string{"kafka", "postgres", "mosquitto", "influxdb"} {
		if _, ok := compose.Services[n]; !ok {
			t.Errorf("%s has no %s service", file, n)
		}
	}
	kafka := compose.Services["kafka"]
	if !strings.Contains(kafka.Environment["KAFKA_PROCESS_ROLES"], "controller") {
		t.Errorf("kafka runs with process roles %q: KRaft needs a controller", kafka.Environment["KAFKA_PROCESS_ROLES"])
	}

	hostPorts := map[string]string{}
	for name, s := range compose.Services {
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if len(parts) < 2 {
				t.Errorf("%s publishes %q on a random host port", name, p)
				continue
			}
			hp := strings.Join(parts[:len(parts)-1], ":")
			if other, dup := hostPorts[hp]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, hp)
			}
			hostPorts[hp] = name
		}
		for dep := range s.DependsOn {
			if _, ok := compose.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which the file lacks", name, dep)
			}
		}
	}

	var gridbells []string
	for name, s := range compose.Services {
		if cmd := fmt.Sprint(s.Command); strings.HasPrefix(cmd, "[run ") {
			gridbells = append(gridbells, name)
		}
	}
	if len(gridbells) != 3 {
		t.Fatalf("%s runs %d gridbell instances %v, want 3", file, len(gridbells), gridbells)
	}
	instances, clients, volumes := map[string]string{}, map[string]string{}, map[string]string{}
	var meterTopic string
	for _, name := range gridbells {
		s := compose.Services[name]
		if s.Scale != nil || s.Deploy != nil {
			t.Errorf("%s has scale %v, deploy %v: replicas of one service share its instance name", name, s.Scale, s.Deploy)
		}
		for _, dep := range []string{"postgres", "mosquitto", "influxdb"} {
			if s.DependsOn[dep] == nil {
				t.Errorf("%s does not wait for %s", name, dep)
			}
		}
		if s.DependsOn["kafka"] == nil && s.DependsOn["kafka-init"] == nil {
			t.Errorf("%s does not wait for kafka", name)
		}
		cmd := s.Command.([]any)
		cfgTarget := fmt.Sprint(cmd[len(cmd)-1])
		var cfgFile, dataVolume string
		cfgEnv := []string{}
		for k, v := range s.Environment {
			cfgEnv = append(cfgEnv, k+"="+v)
		}
		mounts := map[string]string{} // target → source
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			mounts[parts[1]] = parts[0]
		}
		cfgFile = mounts[cfgTarget]
		if cfgFile == "" {
			t.Errorf("%s reads %s, which it does not mount", name, cfgTarget)
			continue
		}
		cfg, err := config.Load(filepath.Join("compose", cfgFile), cfgEnv)
		if err != nil {
			t.Errorf("%s: %s: %v", name, cfgFile, err)
			continue
		}
		if !cfg.Cluster.Enabled || cfg.MQTT.SharedGroup == "" {
			t.Errorf("%s runs with cluster.enabled %v, mqtt.shared_group %q", name, cfg.Cluster.Enabled, cfg.MQTT.SharedGroup)
		}
		if s.Environment["GRIDBELL_CLUSTER_INSTANCE"] == "" || s.Environment["GRIDBELL_MQTT_CLIENT_ID"] == "" {
			t.Errorf("%s does not set its instance name and MQTT client id (the defaults, the container's host name and %q, are not stable or not distinct)", name, cfg.MQTT.ClientID)
		}
		if other, dup := instances[cfg.Cluster.Instance]; dup {
			t.Errorf("%s and %s both run as cluster.instance %q", name, other, cfg.Cluster.Instance)
		}
		if other, dup := clients[cfg.MQTT.ClientID]; dup {
			t.Errorf("%s and %s both use MQTT client id %q", name, other, cfg.MQTT.ClientID)
		}
		instances[cfg.Cluster.Instance], clients[cfg.MQTT.ClientID] = name, name
		dataVolume = mounts[cfg.DataDir]
		if _, named := compose.Volumes[dataVolume]; !named {
			t.Errorf("%s keeps data_dir %s on %q, not a named volume", name, cfg.DataDir, dataVolume)
		} else if other, dup := volumes[dataVolume]; dup {
			t.Errorf("%s and %s share data volume %s", name, other, dataVolume)
		}
		volumes[dataVolume] = name
		meterTopic = cfg.Cluster.MeterTopic
	}

	// The meter topic is created with room for every instance before they
	// start, whatever the broker does on first use.
	init, ok := compose.Services["kafka-init"]
	if !ok {
		t.Fatal("no kafka-init service creates the topics")
	}
	script := fmt.Sprint(init.Command)
	m := regexp.MustCompile(`--topic ` + regexp.QuoteMeta(meterTopic) + ` --partitions (\d+)`).FindStringSubmatch(script)
	if m == nil {
		t.Errorf("kafka-init does not create the meter topic %s: %s", meterTopic, script)
	} else if n, _ := strconv.Atoi(m[1]); n < len(gridbells) {
		t.Errorf("the meter topic has %d partitions for %d instances", n, len(gridbells))
	}

	docker, err := exec.LookPath("docker")
	if err != nil || exec.Command(docker, "compose", "version").Run() != nil {
		t.Skip("docker compose is not installed: the file was checked above only")
	}
	if out, err := exec.Command(docker, "compose", "-f", file, "config", "-q").CombinedOutput(); err != nil {
		t.Errorf("docker compose config: %v\n%s", err, out)
	}
}
