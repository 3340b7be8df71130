package ingest

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
)

// InfluxSink copies readings to InfluxDB.
type InfluxSink struct{}

// NewInflux returns the sink, or nil when cfg.URL is empty.
func NewInflux(cfg InfluxConfig, dataDir string, dir Directory, log zerolog.Logger) (*InfluxSink, error) {
	if cfg.URL == "" {
		log.Info().Msg("influx sink off")
		return nil, nil
	}
	return nil, errors.New("influx sink not built yet")
}

// Write queues r.
func (s *InfluxSink) Write(r event.Reading) {}

// Run writes until ctx ends.
func (s *InfluxSink) Run(ctx context.Context) error { <-ctx.Done(); return nil }
