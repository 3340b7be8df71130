package rules

import (
	"errors"
	"time"
)

// Config is the rules section (docs/interfaces.md §5). Every default is configurable.
type Config struct {
	Momentary       time.Duration `yaml:"momentary"`        // power_off held this long before it counts
	AreaDarkRatio   float64       `yaml:"area_dark_ratio"`  // share of an area's meters dark that puts the whole area out
	ETRChange       time.Duration `yaml:"etr_change"`       // ETR move that sends etr_update
	PlannedReminder time.Duration `yaml:"planned_reminder"` // planned_notice reminder before start
	BalanceLow      float64       `yaml:"balance_low"`      // CNY
	StormAreas      int           `yaml:"storm_areas"`      // areas out within StormWindow that start storm mode
	StormWindow     time.Duration `yaml:"storm_window"`
	Reorder         time.Duration `yaml:"reorder"`      // out-of-order tolerance
	StormDigest     time.Duration `yaml:"storm_digest"` // in storm mode, at most one manager digest per grid this often
	Tick            time.Duration `yaml:"tick"`         // how often stored timers are compared with the clock
	MaxBatch        int           `yaml:"max_batch"`    // events applied in one group commit
}

// Defaults fills zero values with gridbell's defaults.
func (c *Config) Defaults() {
	if c.Momentary == 0 {
		c.Momentary = 60 * time.Second
	}
	if c.AreaDarkRatio == 0 {
		c.AreaDarkRatio = 0.5
	}
	if c.ETRChange == 0 {
		c.ETRChange = 30 * time.Minute
	}
	if c.PlannedReminder == 0 {
		c.PlannedReminder = 24 * time.Hour
	}
	if c.BalanceLow == 0 {
		c.BalanceLow = 30
	}
	if c.StormAreas == 0 {
		c.StormAreas = 50
	}
	if c.StormWindow == 0 {
		c.StormWindow = 5 * time.Minute
	}
	if c.Reorder == 0 {
		c.Reorder = 5 * time.Minute
	}
	if c.StormDigest == 0 {
		c.StormDigest = time.Minute
	}
	if c.Tick == 0 {
		c.Tick = 250 * time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 20000
	}
}

// Validate checks c.
func (c Config) Validate() error {
	if c.Momentary < 0 {
		return errors.New("rules.momentary must not be negative")
	}
	if c.AreaDarkRatio <= 0 || c.AreaDarkRatio > 1 {
		return errors.New("rules.area_dark_ratio must be in (0, 1]")
	}
	if c.ETRChange <= 0 {
		return errors.New("rules.etr_change must be positive")
	}
	if c.BalanceLow < 0 {
		return errors.New("rules.balance_low must not be negative")
	}
	if c.StormWindow <= 0 || c.Tick <= 0 || c.MaxBatch < 1 {
		return errors.New("rules.storm_window, rules.tick and rules.max_batch must be positive")
	}
	if c.StormAreas < 1 {
		return errors.New("rules.storm_areas must be at least 1")
	}
	return nil
}
