package ingest

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/gridbell/gridbell/internal/secret"
)

// TLSConfig configures TLS to a broker. Empty = plain TCP.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// MQTTConfig is the mqtt section (docs/interfaces.md §7).
type MQTTConfig struct {
	Brokers        []string      `yaml:"brokers"` // empty = embedded broker
	EmbeddedListen string        `yaml:"embedded_listen"`
	EmbeddedAuth   EmbeddedAuth  `yaml:"embedded_auth"`
	TopicPrefix    string        `yaml:"topic_prefix"`
	SharedGroup    string        `yaml:"shared_group"`
	ClientID       string        `yaml:"client_id"`
	Username       string        `yaml:"username"`
	Password       secret.String `yaml:"password"`
	TLS            TLSConfig     `yaml:"tls"`
	MaxInflight    int           `yaml:"max_inflight"` // messages being handled at once
}

// KafkaConfig is the kafka section (docs/interfaces.md §7).
type KafkaConfig struct {
	Brokers      []string  `yaml:"brokers"` // empty = Kafka off
	Group        string    `yaml:"group"`
	OMSTopic     string    `yaml:"oms_topic"`
	BillingTopic string    `yaml:"billing_topic"`
	TLS          TLSConfig `yaml:"tls"`
	SASL         struct {
		Mechanism string        `yaml:"mechanism"` // "", plain, scram-sha-256, scram-sha-512
		Username  string        `yaml:"username"`
		Password  secret.String `yaml:"password"`
	} `yaml:"sasl"`
}

// InfluxConfig is the influx section (docs/interfaces.md §7).
type InfluxConfig struct {
	URL          string        `yaml:"url"` // empty = sink off
	Token        secret.String `yaml:"token"`
	Org          string        `yaml:"org"`
	Bucket       string        `yaml:"bucket"`
	BatchSize    int           `yaml:"batch_size"`
	FlushEvery   time.Duration `yaml:"flush_every"`
	SpoolMaxSize int64         `yaml:"spool_max_bytes"` // disk spool cap while InfluxDB is down
}

// Limits bound what ingest accepts (docs/interfaces.md §1).
type Limits struct {
	MaxPayload    int           `yaml:"max_payload"`     // bytes; default 1 MiB
	MaxFuture     time.Duration `yaml:"max_future"`      // default 24h
	LateAfter     time.Duration `yaml:"late_after"`      // older events are accepted and marked late
	DeadLetterRaw int           `yaml:"dead_letter_raw"` // raw bytes kept per dead letter
	// DeadLetterMax and DeadLetterMaxBytes cap the dead-letter table (its
	// letters, and their raw bytes): past either, the oldest go.
	DeadLetterMax      int   `yaml:"dead_letter_max"`
	DeadLetterMaxBytes int64 `yaml:"dead_letter_max_bytes"`
	// MaxPast rejects any event time older than this: a year-old reading
	// or a 1970 outage start is a broken clock, not news.
	MaxPast time.Duration `yaml:"max_past"`
	// MaxAhead bounds the times an OMS or billing event announces: a planned
	// start, an ETR, a disconnection or a due date further ahead is not
	// plausible (an ETR of 9999-12-31 would be told to customers).
	MaxAhead time.Duration `yaml:"max_ahead"`
	// Per OMS event: the scope lists and the cause's length in characters.
	// One event naming 20,000 areas is an attack or a bug, not an outage.
	MaxAreas   int `yaml:"max_areas"`
	MaxFeeders int `yaml:"max_feeders"`
	MaxMeters  int `yaml:"max_meters"`
	MaxCause   int `yaml:"max_cause"`
}

// Defaults fills zero values with gridbell's defaults.
func (c *MQTTConfig) Defaults() {
	if c.EmbeddedListen == "" {
		c.EmbeddedListen = "127.0.0.1:1884"
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "ami"
	}
	if c.ClientID == "" {
		c.ClientID = "gridbell"
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 256
	}
}

// MarshalYAML prints the brokers with their passwords as *** (--print-config).
func (c MQTTConfig) MarshalYAML() (any, error) {
	type plain MQTTConfig
	p := plain(c)
	p.Brokers = make([]string, len(c.Brokers))
	for i, b := range c.Brokers {
		p.Brokers[i] = secret.MaskURL(b)
	}
	return p, nil
}

// Validate checks c without network I/O.
func (c MQTTConfig) Validate() error {
	for _, b := range c.Brokers {
		u, err := url.Parse(b)
		if err != nil || u.Host == "" {
			return fmt.Errorf("mqtt.brokers: %q is not a broker URL like tcp://host:1883", secret.MaskURL(b))
		}
	}
	if c.MaxInflight < 1 {
		return errors.New("mqtt.max_inflight must be at least 1")
	}
	if len(c.Brokers) > 0 {
		return nil
	}
	if !c.EmbeddedAuth.On() && !isLoopback(c.EmbeddedListen) {
		return fmt.Errorf("mqtt.embedded_listen %q is not a loopback address: anyone could read the meter traffic and publish outages; "+
			"set mqtt.embedded_auth.ingest (the credentials head-ends publish with) or listen on 127.0.0.1", c.EmbeddedListen)
	}
	if c.EmbeddedAuth.On() && c.Username != "" && len(c.Password.Reveal()) < minBrokerPassword {
		return fmt.Errorf("mqtt.password must have at least %d characters when mqtt.username is set for the embedded broker", minBrokerPassword)
	}
	return c.EmbeddedAuth.validate(c.Username)
}

// Defaults fills zero values with gridbell's defaults.
func (c *KafkaConfig) Defaults() {
	if c.Group == "" {
		c.Group = "gridbell"
	}
	if c.OMSTopic == "" {
		c.OMSTopic = "oms.outages"
	}
	if c.BillingTopic == "" {
		c.BillingTopic = "billing.accounts"
	}
}

// Validate checks c without network I/O.
func (c KafkaConfig) Validate() error {
	switch c.SASL.Mechanism {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	default:
		return fmt.Errorf("kafka.sasl.mechanism %q is not plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism)
	}
	return nil
}

// Defaults fills zero values with gridbell's defaults.
func (c *InfluxConfig) Defaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 5000
	}
	if c.FlushEvery == 0 {
		c.FlushEvery = time.Second
	}
	if c.SpoolMaxSize == 0 {
		c.SpoolMaxSize = 1 << 30
	}
}

// MarshalYAML prints the URL with its password as *** (--print-config).
func (c InfluxConfig) MarshalYAML() (any, error) {
	type plain InfluxConfig
	p := plain(c)
	p.URL = secret.MaskURL(p.URL)
	return p, nil
}

// Validate checks c without network I/O.
func (c InfluxConfig) Validate() error {
	if c.URL == "" {
		return nil
	}
	if u, err := url.Parse(c.URL); err != nil || u.Host == "" {
		return fmt.Errorf("influx.url %q is not a URL", secret.MaskURL(c.URL))
	}
	if c.Bucket == "" {
		return errors.New("influx.bucket is required when influx.url is set")
	}
	if c.BatchSize < 0 || c.FlushEvery < 0 || c.SpoolMaxSize < 0 {
		return errors.New("influx.batch_size, influx.flush_every and influx.spool_max_bytes must not be negative")
	}
	return nil
}

// Defaults fills zero values with gridbell's defaults.
func (l *Limits) Defaults() {
	if l.MaxPayload == 0 {
		l.MaxPayload = 1 << 20
	}
	if l.MaxFuture == 0 {
		l.MaxFuture = 24 * time.Hour
	}
	if l.LateAfter == 0 {
		l.LateAfter = time.Hour
	}
	if l.DeadLetterRaw == 0 {
		l.DeadLetterRaw = 64 << 10
	}
	if l.DeadLetterMax == 0 {
		l.DeadLetterMax = 100_000
	}
	if l.DeadLetterMaxBytes == 0 {
		l.DeadLetterMaxBytes = 256 << 20
	}
	if l.MaxPast == 0 {
		l.MaxPast = 365 * 24 * time.Hour
	}
	if l.MaxAhead == 0 {
		l.MaxAhead = 90 * 24 * time.Hour
	}
	if l.MaxAreas == 0 {
		l.MaxAreas = 2000
	}
	if l.MaxFeeders == 0 {
		l.MaxFeeders = 500
	}
	if l.MaxMeters == 0 {
		l.MaxMeters = 10000
	}
	if l.MaxCause == 0 {
		l.MaxCause = 200
	}
}

// Validate checks l without network I/O.
func (l Limits) Validate() error {
	if l.MaxPayload < 0 || l.MaxFuture < 0 || l.LateAfter < 0 || l.DeadLetterRaw < 0 || l.MaxPast < 0 || l.MaxAhead < 0 ||
		l.MaxAreas < 0 || l.MaxFeeders < 0 || l.MaxMeters < 0 || l.MaxCause < 0 || l.DeadLetterMax < 0 || l.DeadLetterMaxBytes < 0 {
		return errors.New("ingest limits must not be negative")
	}
	return nil
}
