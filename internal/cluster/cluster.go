// Package cluster holds what distributed mode (docs/deploy.md, distributed mode) needs of the
// configuration: whether this process is one of several sharing the work,
// its stable instance name, and the Kafka topic MQTT input is forwarded to.
// It sits beside the stages, not in the flow: each stage reads the
// instance name; the partitioned rule workers are not built yet, and until
// they are, the service refuses to start in distributed mode (see app).
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
	// MeterTopic is the Kafka topic MQTT input is forwarded to, keyed by
	// transformer area.
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
