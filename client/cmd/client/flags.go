package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/envflag"
	"github.com/sparecycles/sparecycles/internal/logging"
)

// envPrefix names every flag's environment twin: --key-file is SPARECYCLES_CLIENT_KEY_FILE.
var envPrefix = envflag.Prefix("client")

// options are the settings the commands share; each command registers those it uses.
type options struct {
	relays   []string
	keyFile  string
	data     string
	nwc      string
	nwcFlag  string // the flag nwc came from, for errors: "nwc" or "nwc-file"
	logLevel logging.Level
	json     bool
	timeout  time.Duration
}

func newOptions() *options {
	return &options{keyFile: "./client.nsec", data: "./client-data", logLevel: logging.Level{Level: zerolog.WarnLevel}}
}

func (o *options) relayFlag(fs *flag.FlagSet) {
	fs.Func("relay", "relay URL (ws:// or wss://); repeat the flag or separate with commas", func(s string) error {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.relays = append(o.relays, u)
			}
		}
		return nil
	})
}

func (o *options) keyFlag(fs *flag.FlagSet) {
	fs.StringVar(&o.keyFile, "key-file", o.keyFile, "the customer's secret key (nsec or hex); created with mode 0600 when missing")
}

func (o *options) dataFlag(fs *flag.FlagSet) {
	fs.StringVar(&o.data, "data", o.data, "state folder: the payment store, so nothing is paid twice")
}

func (o *options) walletFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.nwc, "nwc", o.nwc, "nostr+walletconnect:// URI of the wallet that pays (prefer the env var or --nwc-file: flags show in ps)")
	fs.Func("nwc-file", "file holding the nostr+walletconnect:// URI", func(path string) error {
		b, err := os.ReadFile(path)
		o.nwc, o.nwcFlag = strings.TrimSpace(string(b)), "nwc-file"
		return err
	})
}

// nwcName is the flag the wallet URI came from, for errors.
func (o *options) nwcName() string {
	if o.nwcFlag != "" {
		return "--" + o.nwcFlag
	}
	return "--nwc"
}

func (o *options) outputFlags(fs *flag.FlagSet, timeout time.Duration, timeoutHelp string) {
	o.timeout = timeout
	fs.BoolVar(&o.json, "json", o.json, "print one JSON document instead of text")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, timeoutHelp)
	fs.Var(&o.logLevel, "log-level", "log level on stderr: debug, info, warn, error")
}

// checkRelays refuses a missing or malformed --relay before anything is dialled.
func (o *options) checkRelays() error {
	if len(o.relays) == 0 {
		return errors.New("give at least one --relay (or " + envflag.Name(envPrefix, "relay") + ")")
	}
	for _, r := range o.relays {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("relay %q is not a ws:// or wss:// URL", r)
		}
	}
	return nil
}

// logger writes to stderr: the console format on a terminal, JSON lines otherwise.
func (o *options) logger(stderr io.Writer) zerolog.Logger {
	if f, ok := stderr.(*os.File); ok {
		return logging.New(f, o.logLevel.Level)
	}
	return zerolog.New(stderr).Level(o.logLevel.Level).With().Timestamp().Logger()
}

// newFlagSet returns a silent flag set: run prints the one error line, and --help is printed
// by parse.
func newFlagSet(c command) *flag.FlagSet {
	fs := flag.NewFlagSet("client "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse reads args into fs and the environment twins; it returns the positional arguments,
// which may come before, between or after the flags (`client status <id> --json`). --help
// prints the command's usage to std.out and returns flag.ErrHelp. A shared variable no longer
// read (SPARECYCLES_NWC) draws a warning on std.errOut naming the one to set; std.parsed
// keeps where each flag came from, so that run's error names the variable that gave it.
func parse(fs *flag.FlagSet, c command, args []string, std stdio) ([]string, error) {
	w := std.out
	flags, positional := reorder(fs, args)
	parsed, err := envflag.Parse(fs, envPrefix, flags)
	if std.parsed != nil {
		*std.parsed = parsed
	}
	for _, s := range parsed.Stale {
		fmt.Fprintln(std.errOut, "client: warning:", s)
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(w, "Usage: client %s %s\n\n%s. Every flag also reads an env var.\n\n", c.name, c.args, capitalize(c.summary))
		fs.SetOutput(w)
		fs.PrintDefaults()
		if c.name == "post" {
			fmt.Fprint(w, "\n", exitCodesHelp)
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w (see client %s --help)", c.name, err, c.name)
	}
	return positional, nil
}

// reorder moves positional arguments after the flags, since package flag stops at the first
// one. A flag that takes a value keeps the argument after it.
func reorder(fs *flag.FlagSet, args []string) (flags, positional []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(positional, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, positional
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// parseBid reads an amount: "500sat", "500000msat", or a bare number of sats.
func parseBid(s string) (int64, error) {
	num, mult := strings.ToLower(strings.TrimSpace(s)), int64(1000)
	for _, unit := range []struct {
		suffix string
		mult   int64
	}{{"msats", 1}, {"msat", 1}, {"sats", 1000}, {"sat", 1000}} {
		if rest, ok := strings.CutSuffix(num, unit.suffix); ok {
			num, mult = strings.TrimSpace(rest), unit.mult
			break
		}
	}
	bad := fmt.Errorf("%q is not an amount: want 500sat, 500000msat or a whole number of sats", s)
	if num == "" || strings.Trim(num, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, bad
	}
	return n * mult, nil
}

// parsePubKey reads an npub or 64 hex characters into hex.
func parsePubKey(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "npub1") {
		if prefix, v, err := nip19.Decode(s); err == nil && prefix == "npub" {
			return v.(string), nil
		}
		return "", fmt.Errorf("%q is not a valid npub", s)
	}
	if s = strings.ToLower(s); !nostr.IsValid32ByteHex(s) {
		return "", fmt.Errorf("%q is not an npub or 64 hex characters", s)
	}
	return s, nil
}

// parseEventID reads a job id: 64 hex characters, a note1 or an nevent1.
func parseEventID(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "note1") || strings.HasPrefix(s, "nevent1") {
		prefix, v, err := nip19.Decode(s)
		switch {
		case err != nil:
		case prefix == "note":
			return v.(string), nil
		case prefix == "nevent":
			return v.(nostr.EventPointer).ID, nil
		}
		return "", fmt.Errorf("%q is not a valid %s", s, strings.SplitN(s, "1", 2)[0])
	}
	if s = strings.ToLower(s); !nostr.IsValid32ByteHex(s) {
		return "", fmt.Errorf("job id %q is not 64 hex characters, a note1 or an nevent1", s)
	}
	return s, nil
}

// npub shows a pubkey the way Nostr clients do, or the hex when it does not encode.
func npub(pk string) string {
	if n, err := nip19.EncodePublicKey(pk); err == nil {
		return n
	}
	return pk
}

// age says how long ago t was, in the largest whole unit.
func age(now time.Time, t nostr.Timestamp) string {
	d := now.Sub(t.Time())
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// sats shows an amount in sats, exactly: 98944 msat is "98.944 sats", never "98 sats".
func sats(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	whole, frac := v/1000, v%1000
	unit := " sats"
	if v == 1000 {
		unit = " sat"
	}
	if frac == 0 {
		return fmt.Sprintf("%s%d%s", sign, whole, unit)
	}
	return fmt.Sprintf("%s%d.%s%s", sign, whole, strings.TrimRight(fmt.Sprintf("%03d", frac), "0"), unit)
}

// msat shows an amount in sats when it is whole, else in msat.
func msat(v int64) string {
	if v%1000 == 0 {
		return fmt.Sprintf("%d sat", v/1000)
	}
	return fmt.Sprintf("%d msat", v)
}
