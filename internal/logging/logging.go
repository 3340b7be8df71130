// Package logging builds the zerolog loggers injected into every component:
// console output on a terminal, JSON otherwise. It also masks phone numbers,
// which never appear whole in a log line.
package logging

import (
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Every duration in gridbell's log (took, window, retry_in…) is a number of
// seconds, with a fraction: one unit for every line, as in its metrics.
func init() {
	zerolog.DurationFieldUnit = time.Second
	zerolog.DurationFieldInteger = false
}

// New returns the root logger writing to w (os.Stderr when nil).
func New(w io.Writer, level zerolog.Level) zerolog.Logger {
	if w == nil {
		w = os.Stderr
	}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: f, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// Component returns l tagged with a component name.
func Component(l zerolog.Logger, name string) zerolog.Logger {
	return l.With().Str("component", name).Logger()
}

// Phone masks a phone number for logs: +8613812345678 → +86138****5678.
// Short or empty input is masked whole.
func Phone(p string) string {
	r := []rune(p)
	if len(r) < 8 {
		return "****"
	}
	keepHead := 3
	if r[0] == '+' {
		keepHead = 6
		if len(r) < 11 {
			keepHead = 3
		}
	}
	out := make([]rune, 0, len(r))
	out = append(out, r[:keepHead]...)
	out = append(out, []rune("****")...)
	return string(append(out, r[len(r)-4:]...))
}
