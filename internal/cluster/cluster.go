// Package cluster is where distributed mode (docs/deploy.md, distributed
// mode) starts: several gridbell processes on Kafka and PostgreSQL, one of
// which, the holder of the cluster-rules lease, runs the rules while the
// others keep copies of their state and forward their input to it.
//
// This package holds the cluster section of the configuration and what the
// instances share in the store beside the rules' state: the meter-topic
// offsets stored with it and the commit count the copies follow, the fence
// every rules commit passes (progress.go), and the record of the
// contacts_file imported at start (contacts.go). The other pieces:
//   - internal/app/cluster.go runs an instance: its instance lease, the
//     copy it follows, the takeover of the rules lease (renewed through the
//     load and the last commit), the graceful stop, the contacts import;
//   - ingest/forward.go forwards every input to the meter topic, keyed by
//     concentrator; ingest/forward_consume.go is the holder's consumer;
//   - rules/cluster.go is the rules' side: input with offsets, the fence,
//     the copy's refresh, API writes forwarded to the holder;
//   - internal/store/lease.go the leases themselves.
package cluster

import (
	"fmt"
	"os"
	"strings"
)

// DefaultMeterTopic is cluster.meter_topic unless configured.
const DefaultMeterTopic = "gridbell.meter-events"

// Config is the cluster section of the configuration.
type Config struct {
	// Enabled: this process is one of several sharing the work on Kafka
	// and PostgreSQL. Off by default: one process does everything.
	Enabled bool `yaml:"enabled"`
	// Instance is this process's stable name: it marks the SMS it is
	// sending and the leases it holds. Default: the host name.
	Instance string `yaml:"instance"`
	// MeterTopic is the Kafka topic every input is forwarded to, keyed by
	// concentrator (else meter; see ingest.Forwarder.Key).
	MeterTopic string `yaml:"meter_topic"`
}

// Defaults fills the instance name from the host name and the meter topic.
func (c *Config) Defaults() {
	if c.Instance == "" {
		c.Instance = hostname()
	}
	if c.MeterTopic == "" {
		c.MeterTopic = DefaultMeterTopic
	}
}

// Validate checks c alone; which other sections distributed mode needs is
// checked by the configuration as a whole.
func (c Config) Validate() error {
	if c.Instance == "" || strings.ContainsFunc(c.Instance, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("cluster.instance %q must be a non-empty name without spaces or control characters", c.Instance)
	}
	if len(c.MeterTopic) > 249 || strings.Trim(c.MeterTopic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" ||
		c.MeterTopic == "" || c.MeterTopic == "." || c.MeterTopic == ".." {
		return fmt.Errorf("cluster.meter_topic %q is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)", c.MeterTopic)
	}
	return nil
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "gridbell"
}
