package care

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the care section (docs/config.md).
type Config struct {
	// SustainedAfter: a meter dark at least this long is a sustained
	// interruption; a shorter one is momentary.
	SustainedAfter Duration `yaml:"sustained_after"`
	// FrequentOutage is the frequent_outage line (频繁停电).
	FrequentOutage Frequent `yaml:"frequent_outage"`
	// History is how long per-customer outage history is kept.
	History Duration `yaml:"history"`
	// Follow is how often the projection reads what the rules committed.
	Follow Duration `yaml:"follow"`
}

// Frequent is the frequent_outage line: Count sustained interruptions
// within Within.
type Frequent struct {
	Count  int      `yaml:"count"`
	Within Duration `yaml:"within"`
}

// Day is 24 hours, the unit of care's longer durations ("60d").
const Day = 24 * time.Hour

// Defaults fills zero values with gridbell's defaults.
func (c *Config) Defaults() {
	if c.SustainedAfter == 0 {
		c.SustainedAfter = Duration(5 * time.Minute)
	}
	if c.FrequentOutage.Count == 0 {
		c.FrequentOutage.Count = 3
	}
	if c.FrequentOutage.Within == 0 {
		c.FrequentOutage.Within = Duration(60 * Day)
	}
	if c.History == 0 {
		c.History = Duration(400 * Day)
	}
	if c.Follow == 0 {
		c.Follow = Duration(2 * time.Second)
	}
}

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.SustainedAfter < 0:
		return errors.New("care.sustained_after is negative")
	case c.FrequentOutage.Count < 1:
		return fmt.Errorf("care.frequent_outage.count %d is below 1", c.FrequentOutage.Count)
	case c.FrequentOutage.Within <= 0:
		return errors.New("care.frequent_outage.within must be positive")
	case c.History < c.FrequentOutage.Within || c.History < Duration(365*Day):
		return fmt.Errorf("care.history %s is shorter than a year or than care.frequent_outage.within: profiles count 365 days", c.History)
	case c.Follow <= 0:
		return errors.New("care.follow must be positive")
	}
	return nil
}

// Duration is a time.Duration that also reads whole days: "400d".
type Duration time.Duration

// UnmarshalText reads "400d", "60d" or anything time.ParseDuration reads.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.Atoi(n)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 5m or 60d", s)
		}
		*d = Duration(time.Duration(v) * Day)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 5m or 60d", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes whole days as "60d".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d Duration) String() string {
	if d > 0 && time.Duration(d)%Day == 0 {
		return strconv.FormatInt(int64(time.Duration(d)/Day), 10) + "d"
	}
	return time.Duration(d).String()
}
