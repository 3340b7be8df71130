package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridbell/gridbell/internal/fleet"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/sim"
)

func simulateCmd(g *globals) *cobra.Command {
	var (
		o        sim.Options
		opts     fleet.Options
		contacts string
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Publish a synthetic fleet's readings over MQTT and play an outage scenario",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load()
			if err != nil {
				return err
			}
			f := fleet.Generate(opts)
			if contacts != "" {
				if err := writeFleet(f, contacts); err != nil {
					return err
				}
				log.Info().Str("file", contacts).Int("customers", len(f.Customers)).Msg("contacts file written")
				if o.Broker == "-" {
					return nil
				}
			}
			if o.Broker == "" {
				o.Broker = cfg.MQTT.EmbeddedPublishURL()
				if len(cfg.MQTT.Brokers) > 0 {
					o.Broker = cfg.MQTT.Brokers[0]
				}
			}
			if o.Prefix == "" {
				o.Prefix = cfg.MQTT.TopicPrefix
			}
			o.Fleet = f
			ctx, stop := signalContext()
			defer stop()
			return sim.Run(ctx, o, logging.Component(log, "simulate"))
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&opts.Customers, "customers", fleet.Demo.Customers, "customers in the fleet")
	fl.IntVar(&opts.Areas, "areas", fleet.Demo.Areas, "transformer areas")
	fl.IntVar(&opts.Grids, "grids", fleet.Demo.Grids, "service grids")
	fl.Int64Var(&opts.Seed, "seed", fleet.Demo.Seed, "random seed (the same seed gives the same fleet)")
	fl.Float64Var(&opts.PrepaidShare, "prepaid", fleet.Demo.PrepaidShare, "share of prepaid meters")
	fl.BoolVar(&opts.Messy, "messy", fleet.Demo.Messy, "type phone numbers the way clerks do")
	fl.StringVar(&contacts, "contacts", "", "write the fleet's contacts CSV to this file (with --broker - only write it)")
	fl.StringVar(&o.Broker, "broker", "", "MQTT broker URL (default: the configured or embedded one)")
	fl.StringVar(&o.Prefix, "prefix", "", "topic prefix (default: mqtt.topic_prefix)")
	fl.StringVar(&o.API, "api", "http://127.0.0.1:8080", "gridbell HTTP API for OMS and billing events (empty: skip them)")
	fl.StringVar(&o.Token, "token", "", "bearer token for the API")
	fl.DurationVar(&o.Interval, "interval", 10*time.Second, "reading cycle")
	fl.BoolVar(&o.Scenario, "scenario", true, "play the outage scenario")
	fl.DurationVar(&o.Duration, "duration", 0, "stop after this long (0: until interrupted)")
	return cmd
}

func writeFleet(f *fleet.Fleet, path string) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // phone numbers, if made up
	if err != nil {
		return fmt.Errorf("cannot write contacts: %w", err)
	}
	if err := f.WriteCSV(out, false); err != nil {
		out.Close()
		return fmt.Errorf("cannot write contacts: %w", err)
	}
	return out.Close()
}
