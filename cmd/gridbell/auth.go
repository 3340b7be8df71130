package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gridbell/gridbell/internal/httpapi"
)

func authCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Web page users"}
	cmd.AddCommand(&cobra.Command{
		Use:   "hash-password",
		Short: "Read a password on stdin and print its auth.users password_hash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("cannot read password from stdin: %w", err)
			}
			h, err := httpapi.HashPassword(strings.TrimRight(line, "\r\n"))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	})
	return cmd
}
