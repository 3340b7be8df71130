package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gridbell/gridbell/contacts"
)

func contactsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "contacts", Short: "Import or check the customer contacts file"}
	var rejects string
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Import a contacts CSV into the registry (one transaction; bad rows go to a reject file)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, log, err := g.load()
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			return importContacts(ctx, cmd.OutOrStdout(), cfg, log, args[0], rejects)
		},
	}
	imp.Flags().StringVar(&rejects, "rejects", "", "reject file (default <data_dir>/contacts-rejects.csv)")
	var format string
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Print a per-grid contact-quality report; stores nothing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("cannot open contacts file: %w", err)
			}
			defer f.Close()
			rep, err := contacts.Check(f)
			if err != nil {
				return err
			}
			switch format {
			case "csv":
				return rep.WriteCSV(cmd.OutOrStdout())
			case "text":
				return rep.WriteText(cmd.OutOrStdout())
			}
			return fmt.Errorf("--format %q is not text or csv", format)
		},
	}
	check.Flags().StringVar(&format, "format", "text", "text or csv")
	cmd.AddCommand(imp, check)
	return cmd
}
