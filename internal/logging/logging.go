// Package logging builds the zerolog logger every binary uses: a console format for humans on
// a terminal, JSON lines otherwise.
package logging

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w at level. Output is human-readable when w is a terminal,
// JSON otherwise.
func New(w *os.File, level zerolog.Level) zerolog.Logger {
	var out io.Writer = w
	if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

// Level is a flag.Value for a zerolog level ("debug", "info", "warn", ...).
type Level struct{ zerolog.Level }

// String returns the level's name.
func (l *Level) String() string { return l.Level.String() }

// Set parses a level name.
func (l *Level) Set(s string) error {
	lv, err := zerolog.ParseLevel(s)
	if err != nil {
		return err
	}
	l.Level = lv
	return nil
}

// Dur shows a duration with its unit for a log field ("815ms", "2.5s"), rounded to what a
// reader needs; zerolog's Dur writes a bare number of milliseconds.
func Dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.String()
}

// FineDur is Dur to 10 µs below a second ("52.21ms"): for the parts of a job's time, which
// are compared with each other and with the model's time, a few milliseconds each.
func FineDur(d time.Duration) string {
	if d >= time.Second {
		return Dur(d)
	}
	return d.Round(10 * time.Microsecond).String()
}
