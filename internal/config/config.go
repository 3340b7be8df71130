// Package config loads gridbell's configuration: defaults in code, then an
// optional YAML file, then GRIDBELL_* environment overrides (docs/interfaces.md §7).
// Each stage owns its own typed section; this package only assembles them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/care"
	"github.com/gridbell/gridbell/internal/cluster"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/store"
	"github.com/gridbell/gridbell/notify"
	"github.com/gridbell/gridbell/rules"
)

// Config is the whole configuration file.
type Config struct {
	// Warnings are what Load found odd but not wrong, for the caller to log.
	Warnings []string `yaml:"-"`

	DataDir      string `yaml:"data_dir"`
	ContactsFile string `yaml:"contacts_file"`
	// ContactsRefresh is how often the running service looks for a contacts
	// import made by another process (gridbell contacts import); 0 = never.
	ContactsRefresh time.Duration `yaml:"contacts_refresh"`
	// Retention is the age after which finished SMS rows and dead letters
	// are pruned, in small batches, every 10 minutes; 0 = keep for ever.
	Retention  time.Duration       `yaml:"retention"`
	HTTP       httpapi.Config      `yaml:"http"`
	MQTT       ingest.MQTTConfig   `yaml:"mqtt"`
	Kafka      ingest.KafkaConfig  `yaml:"kafka"`
	Influx     ingest.InfluxConfig `yaml:"influx"`
	Ingest     ingest.Limits       `yaml:"ingest"`
	Store      store.Config        `yaml:"store"`
	Cluster    cluster.Config      `yaml:"cluster"`
	SMS        notify.Config       `yaml:"sms"`
	Rules      rules.Config        `yaml:"rules"`
	Care       care.Config         `yaml:"care"`
	Auth       httpapi.AuthConfig  `yaml:"auth"`
	QuietHours notify.QuietHours   `yaml:"quiet_hours"`
	Log        struct {
		Level string `yaml:"level"` // debug, info, warn, error
	} `yaml:"log"`
}

// DefaultContactsRefresh is contacts_refresh unless the file or the
// environment says otherwise.
const DefaultContactsRefresh = 30 * time.Second

// DefaultRetention is retention unless the file or the environment says
// otherwise: 90 days.
const DefaultRetention = 90 * 24 * time.Hour

// Load reads the YAML file at path (none when empty), applies environment
// overrides from environ (KEY=VALUE pairs), fills defaults and validates.
func Load(path string, environ []string) (*Config, error) {
	c := &Config{}
	c.QuietHours.Enabled = true                // on unless the file says otherwise
	c.ContactsRefresh = DefaultContactsRefresh // 0 in the file turns it off
	c.Retention = DefaultRetention             // 0 in the file turns it off
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("cannot read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("cannot parse config %s: %w", path, explainYAML(b, err))
		}
	}
	if err := applyEnv(c, environ); err != nil {
		return nil, err
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	return c, nil
}

// Defaults fills every zero value with gridbell's default.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Store.Driver == "" {
		c.Store.Driver = "sqlite"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.Cluster.Defaults()
	c.HTTP.Defaults()
	c.Auth.Defaults()
	c.MQTT.Defaults()
	c.Kafka.Defaults()
	c.Influx.Defaults()
	c.Ingest.Defaults()
	c.SMS.Defaults()
	c.Rules.Defaults()
	c.Care.Defaults()
	c.QuietHours.Defaults()
}

// Validate checks the whole configuration without network I/O.
func (c *Config) Validate() error {
	for _, v := range []func() error{
		c.Store.Validate, c.MQTT.Validate, c.Kafka.Validate, c.Influx.Validate, c.Ingest.Validate,
		c.SMS.Validate, c.Rules.Validate, c.Care.Validate, c.QuietHours.Validate,
		func() error { return httpapi.Validate(c.HTTP, c.Auth) },
	} {
		if err := v(); err != nil {
			return err
		}
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if c.Retention < 0 {
		return fmt.Errorf("retention %s is negative: use 0 to keep everything", c.Retention)
	}
	if c.ContactsRefresh < 0 {
		return fmt.Errorf("contacts_refresh %s is negative: use 0 to turn it off", c.ContactsRefresh)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q is not debug, info, warn or error", c.Log.Level)
	}
	return nil
}

// validateCluster checks that distributed mode has what it runs on
// (docs/deploy.md, distributed mode): the instances share their state in PostgreSQL and their
// meter events on Kafka.
func (c *Config) validateCluster() error {
	if err := c.Cluster.Validate(); err != nil {
		return err
	}
	if !c.Cluster.Enabled {
		return nil
	}
	if c.Store.Driver != "postgres" {
		return fmt.Errorf("cluster.enabled needs store.driver postgres, not %q: the instances share their state in PostgreSQL", c.Store.Driver)
	}
	if len(c.Kafka.Brokers) == 0 {
		return errors.New("cluster.enabled needs kafka.brokers: each instance forwards MQTT input to cluster.meter_topic on Kafka")
	}
	return nil
}
