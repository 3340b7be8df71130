// Command gridbell is the single binary: the main job (run), the contacts
// tools, the simulator and dead-letter tools (docs/interfaces.md §7). It parses flags
// and config and hands over to the packages; wiring lives in internal/app.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/gridbell/gridbell/internal/config"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/metrics"
)

// version is set by the Makefile through -ldflags.
var version = "dev"

func main() {
	metrics.SetVersion(version) // gridbell_build_info
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "gridbell:", err)
		os.Exit(1)
	}
}

// globals are the flags every subcommand shares.
type globals struct {
	configFile string
}

func (g *globals) load() (*config.Config, zerolog.Logger, error) {
	cfg, err := config.Load(g.configFile, os.Environ())
	if err != nil {
		return nil, zerolog.Nop(), err
	}
	lvl, _ := zerolog.ParseLevel(cfg.Log.Level)
	log := logging.New(os.Stderr, lvl)
	for _, w := range cfg.Warnings {
		log.Warn().Msg(w)
	}
	return cfg, log, nil
}

func rootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "gridbell",
		Short:         "Outage, restoration and billing SMS for electricity distribution companies",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configFile, "config", "", "YAML config file (default: the embedded default)")
	root.AddCommand(runCmd(g), contactsCmd(g), simulateCmd(g), deadletterCmd(g), authCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "gridbell", version) },
	})
	return root
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
