package worker

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/logging"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/stream"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

// Config is everything a worker needs to run.
type Config struct {
	Relays        []string // ws:// or wss:// URLs to serve
	Models        string   // models folder with manifests and .onnx files
	KeyFile       string   // secret key; generated there on first run when missing
	Device        onnx.Device
	Library       string // ONNX Runtime shared library; "" finds it (env, cache)
	Threads       int    // intra-op threads per model session
	Parallel      int    // jobs run at once per model
	Queue         int    // jobs waiting per model before the worker answers busy
	Lease         time.Duration
	Lookback      time.Duration // how old a request may be when the worker first subscribes
	Name          string
	About         string
	FetchBytes    int64
	FetchTime     time.Duration
	AllowPrivate  bool          // fetch inputs from private and loopback addresses (tests, LANs)
	NWC           string        // nostr+walletconnect:// URI of the worker's wallet; "" serves free
	nwcFlag       string        // the flag NWC came from, for errors: "nwc" or "nwc-file"
	Data          string        // the worker's state: its job store
	InvoiceExpiry time.Duration // how long a quote's invoice stays payable
	PaymentPoll   time.Duration // how often open invoices are looked up (notifications are the fast path)
	MaxUnpaidMsat int64         // post-pay: what one customer may owe for delivered jobs
	OfferWait     time.Duration // post-pay: how long an offer waits for the customer's acceptance
	// Payment is the schemes offered (escrow, prepay, after) in order of preference; nil:
	// escrow and prepay when the wallet offers hold invoices, else prepay. A model's
	// manifest "payment" overrides it.
	Payment      []string
	SettleWindow time.Duration // escrow: how long after the payment is held the job is settled or refunded
	Reannounce   time.Duration // how often the NIP-89 announcement is refreshed (clients count a fresh one as live)
	Heartbeat    time.Duration // how often a kind 11998 heartbeat is published (nips/heartbeat.md); 0: never
	// Streams (nips/stream.md): an OCR request with several inputs is served part by part.
	StreamWindow int // parts quoted and not yet finished, at most
	MaxParts     int // the most parts (inputs) one stream may have
	MaxStreams   int // streams served at once; more are answered busy
	// Spare cycles (spare.go): when the worker takes jobs and how much of the machine it uses.
	When           string        // WhenAlways or WhenIdle
	MaxOtherLoad   float64       // idle mode: other processes' share of all cores at or above which the owner is busy
	IdleAfter      time.Duration // idle mode: how long the owner must stay idle before jobs are taken again
	SampleEvery    time.Duration // how often the owner's activity is sampled
	Hours          Hours         // local time window jobs are taken in; unset: any time
	PauseOnBattery bool          // pause while the machine runs on battery
	Grace          time.Duration // how long a running job may finish after a pause before it is handed back
	MaxCPUs        int           // cap on Threads × Parallel; 0: no cap
	MaxMemory      int64         // bytes: the Go heap's soft limit and the resident size above which no job is taken; 0: none
	Nice           int           // scheduling niceness of every worker thread (Linux); 0 leaves it
	// Owner samples what the machine's owner is doing; nil reads /proc and /sys
	// (OwnerMonitor). Tests replace it.
	Owner    func() OwnerSample
	LogLevel logging.Level
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Models:        "./models",
		KeyFile:       "./worker.nsec",
		Device:        onnx.Device{Kind: "auto"},
		Threads:       1,
		Parallel:      1,
		Queue:         8,
		Lease:         time.Minute,
		Lookback:      10 * time.Minute,
		Name:          "sparecycles worker",
		About:         "Spare cycles for AI jobs: ONNX Runtime inference over NIP-90.",
		FetchBytes:    8 << 20,
		FetchTime:     15 * time.Second,
		Data:          "./worker-data",
		InvoiceExpiry: 10 * time.Minute,
		PaymentPoll:   5 * time.Second,
		MaxUnpaidMsat: 100_000,
		OfferWait:     time.Minute,
		SettleWindow:  10 * time.Minute,
		Reannounce:    5 * time.Minute,
		Heartbeat:     time.Minute,
		StreamWindow:  2,
		MaxParts:      64,
		MaxStreams:    16,
		When:          WhenAlways,
		MaxOtherLoad:  0.25,
		IdleAfter:     30 * time.Second,
		SampleEvery:   time.Second,
		Grace:         10 * time.Second,
		Nice:          10,
		LogLevel:      logging.Level{Level: zerolog.InfoLevel},
	}
}

// RegisterFlags binds the settings to fs with DefaultConfig's defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	*c = DefaultConfig()
	fs.Func("relay", "relay URL to serve; repeat the flag or separate with commas", func(s string) error {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				c.Relays = append(c.Relays, u)
			}
		}
		return nil
	})
	fs.StringVar(&c.Models, "models", c.Models, "models folder: manifests (*.json) beside their .onnx files")
	fs.StringVar(&c.KeyFile, "key-file", c.KeyFile, "secret key file (nsec or hex); created with mode 0600 when missing")
	fs.Var(&c.Device, "device", "execution device: auto, cpu, cuda or cuda:N")
	fs.StringVar(&c.Library, "onnxruntime-lib", c.Library, "ONNX Runtime shared library (default: $SPARECYCLES_ONNXRUNTIME_LIB, then the scripts/fetch-onnxruntime cache)")
	fs.IntVar(&c.Threads, "threads", c.Threads, "intra-op threads per model session")
	fs.IntVar(&c.Parallel, "parallel", c.Parallel, "jobs run at once per model")
	fs.IntVar(&c.Queue, "queue", c.Queue, "jobs waiting per model before the worker answers busy")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "lease asked of relays that coordinate leases (renewed while a job runs)")
	fs.DurationVar(&c.Lookback, "lookback", c.Lookback, "oldest job request served when first subscribing")
	fs.StringVar(&c.Name, "name", c.Name, "name in the NIP-89 announcement")
	fs.StringVar(&c.About, "about", c.About, "description in the NIP-89 announcement")
	fs.Int64Var(&c.FetchBytes, "max-input-bytes", c.FetchBytes, "largest input fetched from a URL")
	fs.DurationVar(&c.FetchTime, "fetch-timeout", c.FetchTime, "time limit for fetching an input")
	fs.BoolVar(&c.AllowPrivate, "allow-private-urls", c.AllowPrivate, "fetch inputs from private, loopback and link-local addresses")
	fs.StringVar(&c.NWC, "nwc", c.NWC, "nostr+walletconnect:// URI of the wallet paid invoices go to (prefer the env var or --nwc-file: flags show in ps); none serves jobs free")
	fs.Func("nwc-file", "file holding the nostr+walletconnect:// URI", func(path string) error {
		b, err := os.ReadFile(path)
		c.NWC, c.nwcFlag = strings.TrimSpace(string(b)), "nwc-file"
		return err
	})
	fs.StringVar(&c.Data, "data", c.Data, "state folder: the job store that survives restarts")
	fs.DurationVar(&c.InvoiceExpiry, "invoice-expiry", c.InvoiceExpiry, "how long a quote's invoice stays payable")
	fs.DurationVar(&c.PaymentPoll, "payment-poll", c.PaymentPoll, "how often open invoices are looked up besides wallet notifications")
	fs.Int64Var(&c.MaxUnpaidMsat, "max-unpaid", c.MaxUnpaidMsat, "post-pay models: msats one customer may owe for delivered jobs")
	fs.DurationVar(&c.OfferWait, "offer-wait", c.OfferWait, "post-pay models: how long an offer waits for the customer to accept it before it is forgotten")
	fs.Func("payment", "payment schemes offered, in order of preference: escrow, prepay, after, comma-separated (default: escrow,prepay when the wallet offers hold invoices, else prepay)", func(s string) error {
		schemes, err := parseSchemes(s)
		c.Payment = schemes
		return err
	})
	fs.DurationVar(&c.SettleWindow, "settle-window", c.SettleWindow, "escrow: the job is settled or refunded within this long of the payment's arrival; longer than a job's run and delivery")
	fs.DurationVar(&c.Reannounce, "reannounce", c.Reannounce, "how often the NIP-89 announcement is refreshed; clients count a worker announced within 15 minutes as live")
	fs.DurationVar(&c.Heartbeat, "heartbeat", c.Heartbeat, "how often a heartbeat (kind 11998: ready, busy, queue depth) is published; readers count a worker alive while its last beat is at most 15m old; 0 sends none")
	fs.IntVar(&c.StreamWindow, "stream-window", c.StreamWindow, "streamed jobs (an OCR request with several inputs, one part each): parts quoted ahead of the last one finished; the unpaid work at risk is at most this many parts")
	fs.IntVar(&c.MaxParts, "max-parts", c.MaxParts, "streamed jobs: the most inputs (parts) one request may have; longer ones are refused")
	fs.IntVar(&c.MaxStreams, "max-streams", c.MaxStreams, "streamed jobs served at once; more are answered busy")
	fs.StringVar(&c.When, "when", c.When, "when jobs are taken: always, or idle (only while other processes use less than --max-other-load of the machine)")
	fs.Float64Var(&c.MaxOtherLoad, "max-other-load", c.MaxOtherLoad, "idle mode: the owner is busy when other processes use this fraction of all cores or more")
	fs.DurationVar(&c.IdleAfter, "idle-after", c.IdleAfter, "idle mode: how long the owner must stay idle before jobs are taken again")
	fs.DurationVar(&c.SampleEvery, "sample-every", c.SampleEvery, "how often the owner's CPU load, power and the clock are looked at")
	fs.Var(&c.Hours, "hours", "local time window jobs are taken in, e.g. 22:00-07:00 (may wrap midnight); empty: any time")
	fs.BoolVar(&c.PauseOnBattery, "pause-on-battery", c.PauseOnBattery, "take no jobs while the machine runs on battery")
	fs.DurationVar(&c.Grace, "grace", c.Grace, "after a pause, how long a running job may go on; past it the job is handed back (error feedback \"paused by owner\") for another worker")
	fs.IntVar(&c.MaxCPUs, "max-cpus", c.MaxCPUs, "most CPUs inference may use: --threads × --parallel must not exceed it (0: no cap)")
	fs.Func("max-memory", "memory cap (bytes, or with K/M/G): the Go heap's soft limit, and no job is taken while the worker's resident size is above it (0: none)", func(s string) error {
		v, err := ParseSize(s)
		c.MaxMemory = v
		return err
	})
	fs.IntVar(&c.Nice, "nice", c.Nice, "scheduling niceness (0-19) of every worker thread, so inference yields to the owner's programs (Linux; 0 leaves it)")
	fs.Var(&c.LogLevel, "log-level", "log level: debug, info, warn, error")
}

// maxSettleWindow bounds --settle-window below how long a wallet holds a payment by default
// (80 blocks), so the window closes before the hold times out.
const maxSettleWindow = 12 * time.Hour

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if len(c.Relays) == 0 {
		return errors.New("worker config: give at least one --relay")
	}
	for _, r := range c.Relays {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("worker config: relay %q is not a ws:// or wss:// URL", r)
		}
	}
	switch {
	case c.Threads < 1 || c.Parallel < 1:
		return errors.New("worker config: --threads and --parallel must be at least 1")
	case c.Queue < 0:
		return errors.New("worker config: --queue must not be negative")
	case c.Lease < 5*time.Second:
		return errors.New("worker config: --lease must be at least 5s")
	case c.FetchBytes < 1 || c.FetchTime <= 0:
		return errors.New("worker config: --max-input-bytes and --fetch-timeout must be positive")
	case c.Data == "":
		return errors.New("worker config: --data is empty")
	case c.InvoiceExpiry < time.Minute || c.PaymentPoll <= 0:
		return errors.New("worker config: --invoice-expiry must be at least 1m and --payment-poll positive")
	case c.OfferWait < time.Second:
		return errors.New("worker config: --offer-wait must be at least 1s")
	case c.SettleWindow < 10*time.Second || c.SettleWindow > maxSettleWindow:
		return fmt.Errorf("worker config: --settle-window must be between 10s and %s (a hold invoice's default CLTV delta, 80 blocks, holds a payment about 13 hours)", maxSettleWindow)
	case c.Reannounce < time.Minute || c.Reannounce > 10*time.Minute:
		return errors.New("worker config: --reannounce must be between 1m and 10m (clients count an announcement up to 15 minutes old as live)")
	case c.Heartbeat != 0 && (c.Heartbeat < time.Second || c.Heartbeat > 10*time.Minute):
		return errors.New("worker config: --heartbeat must be 0 (off) or between 1s and 10m (readers count a beat up to 15 minutes old as alive)")
	case c.MaxParts < 2 || c.MaxParts > stream.MaxParts:
		return fmt.Errorf("worker config: --max-parts must be between 2 and %d", stream.MaxParts)
	case c.StreamWindow < 1 || c.StreamWindow > c.MaxParts:
		return errors.New("worker config: --stream-window must be between 1 and --max-parts")
	case c.MaxStreams < 1:
		return errors.New("worker config: --max-streams must be at least 1")
	}
	if err := c.validateSpare(); err != nil {
		return err
	}
	if _, err := parseSchemes(strings.Join(c.Payment, ",")); err != nil {
		return fmt.Errorf("worker config: --payment: %w", err)
	}
	if c.NWC != "" {
		if _, err := nip47.ParseURI(c.NWC); err != nil {
			from := c.nwcFlag
			if from == "" {
				from = "nwc"
			}
			return fmt.Errorf("worker config: --%s: %w", from, err)
		}
	}
	return nil
}

// Level is the configured log level.
func (c *Config) Level() zerolog.Level { return c.LogLevel.Level }
