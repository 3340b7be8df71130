package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/gridbell/gridbell/ingest"
	"github.com/gridbell/gridbell/internal/app"
)

func deadletterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "deadletter", Short: "List or replay rejected input"}
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, newest first, one JSON object a line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load()
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			dl, closeFn, err := app.OpenDeadLetters(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer closeFn()
			items, err := dl.List(ctx, limit)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				// on stderr: stdout stays JSON lines for scripts
				fmt.Fprintln(cmd.ErrOrStderr(), "no dead letters: every message received so far was accepted")
				return nil
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetEscapeHTML(false)
			for _, it := range items {
				if err := enc.Encode(listLine(it)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "how many")
	var api, token string
	replay := &cobra.Command{
		Use:   "replay [ID ...]",
		Short: "Ask the running gridbell to decode dead letters again and hand the good ones to the rules (all when no ID is given)",
		Long: "The rules keep their state in the running service, so a replay goes through it: " +
			"this command posts the ids to POST /api/v1/deadletters/replay.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := make([]int64, 0, len(args))
			for _, a := range args {
				id, err := strconv.ParseInt(a, 10, 64)
				if err != nil {
					return fmt.Errorf("dead letter id %q is not a number", a)
				}
				ids = append(ids, id)
			}
			cfg, _, err := g.load()
			if err != nil {
				return err
			}
			if api == "" {
				api = "http://" + cfg.HTTP.Listen
			}
			ctx, stop := signalContext()
			defer stop()
			return postReplay(ctx, cmd.OutOrStdout(), api, token, ids)
		},
	}
	replay.Flags().StringVar(&api, "api", "", "the running gridbell's HTTP address (default http://<http.listen>)")
	replay.Flags().StringVar(&token, "token", "", "an admin bearer token")
	cmd.AddCommand(list, replay)
	return cmd
}

func postReplay(ctx context.Context, out io.Writer, api, token string, ids []int64) error {
	body, _ := json.Marshal(map[string][]int64{"ids": ids})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/v1/deadletters/replay", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach gridbell at %s (is it running?): %w", api, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("replay failed: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	_, err = out.Write(b)
	return err
}

// deadLetterLine is a dead letter as `deadletter list` prints it: the
// refused input as text a person can read when it is UTF-8 (JSON, line
// protocol: nearly always), base64 only when it is not.
type deadLetterLine struct {
	ingest.DeadLetter
	Raw         any    `json:"raw"`
	RawEncoding string `json:"raw_encoding"` // text or base64
}

func listLine(d ingest.DeadLetter) deadLetterLine {
	if utf8.Valid(d.Raw) {
		return deadLetterLine{DeadLetter: d, Raw: string(d.Raw), RawEncoding: "text"}
	}
	return deadLetterLine{DeadLetter: d, Raw: d.Raw, RawEncoding: "base64"}
}
