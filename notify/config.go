package notify

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/gridbell/gridbell/internal/secret"
)

// TwilioConfig is sms.twilio (docs/interfaces.md §7).
type TwilioConfig struct {
	AccountSID          string        `yaml:"account_sid"`
	AuthToken           secret.String `yaml:"auth_token"`
	MessagingServiceSID string        `yaml:"messaging_service_sid"`
	From                string        `yaml:"from"`
	APIBase             string        `yaml:"api_base"`
	StatusCallback      string        `yaml:"status_callback"`
	InboundURL          string        `yaml:"inbound_url"` // the URL Twilio posts replies to; empty = rebuilt from the request
	Rate                float64       `yaml:"rate"`        // messages per second
	Timeout             time.Duration `yaml:"timeout"`
}

// Config is the sms section (docs/interfaces.md §7).
type Config struct {
	Sender       string       `yaml:"sender"`      // outbox or twilio
	OutboxFile   string       `yaml:"outbox_file"` // default <data_dir>/outbox.jsonl
	Twilio       TwilioConfig `yaml:"twilio"`
	PhoneHourly  int          `yaml:"phone_hourly"`  // per-phone messages an hour; safety kinds exempt; negative = no limit
	TemplatesDir string       `yaml:"templates_dir"` // operator overrides; empty = built in
	Hotline      string       `yaml:"hotline"`
	MaxAttempts  int          `yaml:"max_attempts"`
	Workers      int          `yaml:"workers"`
	// MaxSegments caps a message body; a longer one is shortened (the
	// sender's free text first). Default DefaultMaxSegments.
	MaxSegments int `yaml:"max_segments"`
}

// QuietHours is the quiet_hours section (docs/interfaces.md §7).
type QuietHours struct {
	Enabled  bool   `yaml:"enabled"`
	Start    string `yaml:"start"` // HH:MM
	End      string `yaml:"end"`
	Timezone string `yaml:"timezone"`
}

// Defaults fills zero values with gridbell's defaults.
func (c *Config) Defaults() {
	if c.Sender == "" {
		c.Sender = "outbox"
	}
	if c.Twilio.APIBase == "" {
		c.Twilio.APIBase = "https://api.twilio.com"
	}
	if c.Twilio.Rate == 0 {
		c.Twilio.Rate = 10
	}
	if c.Twilio.Timeout == 0 {
		c.Twilio.Timeout = 10 * time.Second
	}
	if c.PhoneHourly == 0 {
		c.PhoneHourly = 5
	}
	if c.Hotline == "" {
		c.Hotline = "95598"
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.MaxSegments == 0 {
		c.MaxSegments = DefaultMaxSegments
	}
}

// Validate checks c without network I/O.
func (c Config) Validate() error {
	switch c.Sender {
	case "outbox":
	case "twilio":
		t := c.Twilio
		if t.AccountSID == "" || t.AuthToken == "" {
			return errors.New("sms.twilio.account_sid and sms.twilio.auth_token are required when sms.sender is twilio")
		}
		if t.MessagingServiceSID == "" && t.From == "" {
			return errors.New("sms.twilio needs messaging_service_sid or from")
		}
		if u, err := url.Parse(t.APIBase); err != nil || u.Host == "" {
			return fmt.Errorf("sms.twilio.api_base %q is not a URL", t.APIBase)
		}
		if t.Rate <= 0 {
			return errors.New("sms.twilio.rate must be positive")
		}
	default:
		return fmt.Errorf("sms.sender %q is not outbox or twilio", c.Sender)
	}
	if c.Workers < 0 || c.MaxAttempts < 0 {
		return errors.New("sms.workers and sms.max_attempts must not be negative")
	}
	if c.MaxSegments < maxSegments {
		return fmt.Errorf("sms.max_segments %d is below %d, what a built-in template takes with typical values", c.MaxSegments, maxSegments)
	}
	return nil
}

// Defaults fills zero values with gridbell's defaults. Quiet hours are on by
// default; the loader sets Enabled before YAML is read.
func (q *QuietHours) Defaults() {
	if q.Start == "" {
		q.Start = "22:00"
	}
	if q.End == "" {
		q.End = "07:00"
	}
	if q.Timezone == "" {
		q.Timezone = "Asia/Shanghai"
	}
}

// Validate checks q.
func (q QuietHours) Validate() error {
	for _, s := range []string{q.Start, q.End} {
		if _, err := time.Parse("15:04", s); err != nil {
			return fmt.Errorf("quiet_hours: %q is not HH:MM", s)
		}
	}
	if _, err := time.LoadLocation(q.Timezone); err != nil {
		return fmt.Errorf("quiet_hours.timezone: %w", err)
	}
	return nil
}
