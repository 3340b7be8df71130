package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/gridbell/gridbell/internal/app"
	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/fleet"
	"github.com/gridbell/gridbell/internal/httpapi"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/sim"
)

func runCmd(g *globals) *cobra.Command {
	var checkOnly, printConfig, demo bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the main job: ingest, rules, notify and the HTTP API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load()
			if err != nil {
				return err
			}
			if printConfig {
				return yaml.NewEncoder(cmd.OutOrStdout()).Encode(cfg)
			}
			if checkOnly {
				fmt.Fprintln(cmd.OutOrStdout(), "config ok")
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile() // written at a graceful stop
			}
			var f *fleet.Fleet
			if demo {
				if f, err = prepareDemo(cfg, log); err != nil {
					return err
				}
			}
			a, err := app.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			if demo {
				go playDemo(ctx, cfg, a, f, log)
			}
			return a.Run(ctx)
		},
	}
	cmd.Flags().BoolVar(&checkOnly, "check-config", false, "validate the configuration and exit")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the effective configuration (secrets masked) and exit")
	cmd.Flags().BoolVar(&demo, "demo", false, "import a demo fleet and play the demo scenario against this instance")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) of the whole run to this file at a graceful stop")
	return cmd
}

// prepareDemo writes the demo fleet's contacts file, makes it the one to
// import unless another is configured, and turns quiet hours off.
func prepareDemo(cfg *config.Config, log zerolog.Logger) (*fleet.Fleet, error) {
	f, err := writeDemoContacts(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if cfg.ContactsFile == "" {
		cfg.ContactsFile = filepath.Join(cfg.DataDir, "demo-contacts.csv")
	}
	if cfg.QuietHours.Enabled {
		// A demo must show every kind whatever the hour; in production
		// balance_low and the like wait for 07:00.
		cfg.QuietHours.Enabled = false
		log.Info().Msg("demo: quiet hours off so that held kinds (balance_low, arrears) show at once")
	}
	return f, nil
}

// playDemo plays the demo scenario against a once it is ready, until ctx
// is done.
func playDemo(ctx context.Context, cfg *config.Config, a *app.App, f *fleet.Fleet, log zerolog.Logger) {
	outbox := cfg.SMS.OutboxFile
	if outbox == "" {
		outbox = filepath.Join(cfg.DataDir, "outbox.jsonl")
	}
	log.Info().Str("outbox", outbox).Str("web", "http://"+cfg.HTTP.Listen+"/").
		Msg("demo: simulated fleet starting; watch the outbox file and the web page")
	opts := sim.Options{
		Broker:   cfg.MQTT.EmbeddedPublishURL(),
		Prefix:   cfg.MQTT.TopicPrefix,
		API:      "http://" + cfg.HTTP.Listen,
		Fleet:    f,
		Interval: 10 * time.Second,
		Scenario: true,
	}
	if len(cfg.MQTT.Brokers) > 0 {
		opts.Broker = cfg.MQTT.Brokers[0]
	}
	for _, t := range cfg.Auth.Tokens {
		if t.Role == httpapi.RoleAdmin || t.Role == httpapi.RoleIngest {
			opts.Token = t.Token.Reveal()
			break
		}
	}
	if opts.Token == "" && (len(cfg.Auth.Tokens) > 0 || len(cfg.Auth.Users) > 0) {
		log.Warn().Msg("demo: the API needs a token here and auth.tokens has no admin or ingest token: " +
			"the scenario's OMS and billing events will be refused (401); add one to auth.tokens")
	}
	if waitReady(ctx, a) != nil {
		return
	}
	if err := sim.Run(ctx, opts, logging.Component(log, "simulate")); err != nil && ctx.Err() == nil {
		log.Error().Err(err).Msg("demo simulator stopped")
	}
}

func writeDemoContacts(dataDir string) (*fleet.Fleet, error) {
	f := fleet.Generate(fleet.Demo)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create data_dir: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(dataDir, "demo-contacts.csv"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot write demo contacts: %w", err)
	}
	defer out.Close()
	if err := f.WriteCSV(out, false); err != nil {
		return nil, fmt.Errorf("cannot write demo contacts: %w", err)
	}
	return f, out.Close()
}

// waitReady polls the app until it is ready or ctx is done.
func waitReady(ctx context.Context, a *app.App) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for a.Ready() != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
