// Command telegraf runs gridbell's ingest side by side with Telegraf on one
// workload and prints one table: readings/s end to end (first publish to the
// last point visible in InfluxDB), each consumer's CPU-seconds per million
// readings and peak RSS, and influxd's CPU beside them.
//
// The workload is the ingest benchmark's reference rig (docs/interfaces.md §1
// readings, QoS 1, 2,000 concentrators × 100 meters, one 15-minute round
// after another): batch mode publishes one JSON array of 100 readings per
// message on ami/{c}/readings, single mode one reading per message on
// ami/{c}/{meter}/reading, from 4 connections as fast as Mosquitto
// acknowledges. Each consumer gets its own Mosquitto (max_inflight_messages
// 0, max_queued_messages 0) and its own fresh influxd 1.8, so the first
// round also creates the 200k series. gridbell runs with a contacts file for
// the whole fleet, as in production; Telegraf runs mqtt_consumer + json_v2 →
// influxdb_v2 with 5,000-metric batches. Run it from the project root:
//
//	go run ./bench/telegraf [-n 2000000] [-mode batch|single] [-consumers telegraf,gridbell]
//
// Without a Telegraf binary it prints how to install one and exits.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridbell/gridbell/ingest/influxtest"
)

func main() {
	n := flag.Int("n", 2_000_000, "readings to publish")
	mode := flag.String("mode", "batch", "batch (100 readings a message) or single (one a message)")
	consumers := flag.String("consumers", "telegraf,gridbell", "consumers to run, one after the other")
	contacts := flag.Bool("contacts", true, "gridbell: import a contacts file of the whole fleet first")
	conns := flag.Int("conns", 4, "publisher connections")
	idle := flag.Duration("idle", 10*time.Second, "pause before each run, so the last one's tail does not count")
	profile := flag.String("cpuprofile", "", "gridbell: write a CPU profile of its run to this file (go tool pprof)")
	flag.Parse()
	if *mode != "batch" && *mode != "single" {
		fail(fmt.Errorf("-mode %q is not batch or single", *mode))
	}
	tg := telegrafBinary()
	if tg == "" && strings.Contains(*consumers, "telegraf") {
		fmt.Println("bench/telegraf: no telegraf binary on PATH or in $(go env GOPATH)/bin; skipped. Install it with: go install github.com/influxdata/telegraf/cmd/telegraf@latest")
		return
	}
	if _, err := influxtest.Binary(); err != nil {
		fail(err)
	}
	work, err := os.MkdirTemp("", "gbtelegraf")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(work)
	w := workload{n: *n, single: *mode == "single", conns: *conns}
	var rows []result
	for _, c := range strings.Split(*consumers, ",") {
		time.Sleep(*idle)
		var cons consumer
		switch c = strings.TrimSpace(c); c {
		case "telegraf":
			cons = &telegraf{bin: tg}
		case "gridbell":
			bin := filepath.Join(work, "gridbell-bin")
			if out, err := exec.Command("go", "build", "-o", bin, "./cmd/gridbell").CombinedOutput(); err != nil {
				fail(fmt.Errorf("cannot build gridbell (run from the project root): %v: %s", err, out))
			}
			cons = &gridbell{bin: bin, contacts: *contacts, profile: *profile}
		default:
			fail(fmt.Errorf("unknown consumer %q", c))
		}
		r, err := runOne(filepath.Join(work, c), cons, w)
		if err != nil {
			fail(fmt.Errorf("%s: %w", c, err))
		}
		rows = append(rows, r)
	}
	print(rows, w)
}

func print(rows []result, w workload) {
	host, _ := os.Hostname()
	fmt.Printf("\ningest side by side, %s mode, %d readings, %s, %s\n", map[bool]string{true: "single", false: "batch"}[w.single],
		w.n, host, time.Now().UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "consumer\treadings in InfluxDB\tend to end s\treadings/s\tCPU-s\tCPU-s per M\tpeak RSS MiB\tinfluxd CPU-s per M\tload before\t")
	for _, r := range rows {
		m := float64(r.arrived) / 1e6
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%.1f\t%.2f\t%d\t%.1f\t%s\t\n", r.name, r.arrived, r.elapsed.Seconds(),
			float64(r.arrived)/r.elapsed.Seconds(), r.cpu, r.cpu/m, r.peakRSS>>20, r.influxCPU/m, r.load)
	}
	tw.Flush()
	if len(rows) == 2 && rows[0].arrived > 0 && rows[1].arrived > 0 {
		a, b := rows[0], rows[1]
		fmt.Printf("%s / %s: %.2f× the readings/s at %.2f× the CPU per reading and %.2f× the peak RSS\n", b.name, a.name,
			(float64(b.arrived)/b.elapsed.Seconds())/(float64(a.arrived)/a.elapsed.Seconds()),
			(b.cpu/float64(b.arrived))/(a.cpu/float64(a.arrived)), float64(b.peakRSS)/float64(a.peakRSS))
	}
}

func telegrafBinary() string {
	if p, err := exec.LookPath("telegraf"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if p := filepath.Join(dir, "bin", "telegraf"); fileExists(p) {
				return p
			}
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/telegraf:", err)
	os.Exit(1)
}
