package relay

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/logging"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
)

// Config is everything a relay needs to run. The zero value is not useful: start from
// DefaultConfig, or RegisterFlags, which sets the same defaults.
type Config struct {
	Listen string // host:port for the websocket, NIP-11 and the HTTP API
	Data   string // folder of the LMDB store

	// GroupCommit lets events that arrive together share one transaction and one disk sync;
	// each OK still goes out only after the event's commit.
	GroupCommit bool
	// CommitDelay bounds how long a group commit waits for the writers of the commit before to
	// come back (clients that wait for each OK), never longer than the last commit took; 0
	// disables the wait.
	CommitDelay time.Duration

	Name        string
	Description string
	Pubkey      string // operator's hex pubkey, for NIP-11
	Contact     string

	// Web serves the market page (relay/web) at "/" to browsers; WebTitle is its heading ("":
	// Name).
	Web      bool
	WebTitle string

	MaxEventBytes int           // serialized size of one event
	MaxTags       int           // tags on one event
	MaxPast       time.Duration // how old created_at may be
	MaxFuture     time.Duration // how far ahead created_at may be
	Kinds         KindSet       // kinds accepted for writing

	IPRate      float64 // events per second per IP; 0 turns the limit off
	IPBurst     int
	PubkeyRate  float64 // events per second per author pubkey; 0 turns the limit off
	PubkeyBurst int
	AuthRate    float64 // events per second per pubkey publishing on a connection it authenticated as
	AuthBurst   int
	NWCRate     float64 // NIP-47 wallet events (kinds 23194-23197) per second, per pubkey and per IP
	NWCBurst    int
	ReqRate     float64 // REQs and COUNTs per second per IP
	ReqBurst    int
	// TrustedPubkeys publish without rate limits (the operator's Pubkey is always trusted).
	TrustedPubkeys []string
	// TrustedProxies are the proxies whose X-Forwarded-For and X-Real-IP headers name the client.
	TrustedProxies Proxies

	MaxConnsPerIP     int           // open websocket connections per client IP
	MaxSubscriptions  int           // open subscriptions per connection
	MaxFilters        int           // filters in one REQ
	MaxFilterValues   int           // ids, authors, kinds and tag values in one REQ or COUNT
	MaxSubIDLength    int           // bytes of a subscription id
	MaxRequestBytes   int           // bytes of any message but an EVENT (REQ, COUNT, CLOSE, AUTH)
	MaxLimit          int           // most stored events one filter returns
	DefaultLimit      int           // stored events a filter without a limit returns
	MaxQueriesPerConn int           // stored-event reads (REQ filters, COUNTs) in progress per connection
	MaxQueries        int           // stored-event reads in one read transaction at once, relay-wide
	QueryScan         int           // index entries one filter or COUNT may visit
	MaxOutboundBytes  int           // bytes queued for one connection before it is dropped
	WriteTimeout      time.Duration // longest a write to one connection may take
	MaxInFlight       int           // messages of one connection handled at once

	AuthWrites   bool     // writes need NIP-42 authentication
	AllowPubkeys []string // when set, only these authenticated pubkeys may write (implies AuthWrites)
	JobPoW       int      // NIP-13 difficulty a job request (5000-5999) needs; 0 = none
	StrictJobs   bool     // refuse NIP-90 events that nips/nip90 cannot parse

	MaxLease  time.Duration // the longest lease a claim may ask for
	LeaseSkew time.Duration // how far a claim's created_at may be from the relay clock

	// AliveAfter is how old a worker's last heartbeat (kind 11998) may be for /api/workers to
	// call it alive: 900 s, the convention readers share; tests shorten it.
	AliveAfter time.Duration

	LogLevel logging.Level

	// Now is the relay's clock; nil means time.Now. Tests move it to expire leases.
	Now func() time.Time
}

// DefaultKinds is the kind allowlist of a market relay: profiles, deletions, relay lists, NIP-90
// requests, results and feedback, worker heartbeats, paid reviews (NIP-32 labels, kind 1985,
// nips/review.md), NIP-89 handler recommendations and announcements, and NIP-47 wallet kinds so
// that wallets can use the same relay.
const DefaultKinds = "0,5,1985,10002,5000-5999,6000-6999,7000,11998,31989,31990,13194,23194-23197"

// DefaultConfig returns the defaults, safe for a public market relay.
func DefaultConfig() Config {
	kinds, _ := ParseKindSet(DefaultKinds)
	return Config{
		Listen:        "127.0.0.1:7447",
		Data:          "./data",
		GroupCommit:   true,
		CommitDelay:   2 * time.Millisecond,
		Name:          "sparecycles relay",
		Web:           true,
		Description:   "A community market for AI compute: NIP-90 jobs with relay-coordinated leases, paid over Lightning.",
		MaxEventBytes: 256 << 10,
		MaxTags:       2000,
		MaxPast:       24 * time.Hour,
		MaxFuture:     15 * time.Minute,
		Kinds:         kinds,
		IPRate:        20,
		IPBurst:       200,
		PubkeyRate:    10,
		PubkeyBurst:   100,
		AuthRate:      50,
		AuthBurst:     500,
		NWCRate:       100,
		NWCBurst:      1000,
		ReqRate:       50,
		ReqBurst:      500,

		MaxConnsPerIP:     64,
		MaxSubscriptions:  32,
		MaxFilters:        10,
		MaxFilterValues:   1000,
		MaxSubIDLength:    64,
		MaxRequestBytes:   128 << 10,
		MaxLimit:          1500,
		DefaultLimit:      375,
		MaxQueriesPerConn: 4,
		MaxQueries:        32,
		QueryScan:         100_000,
		MaxOutboundBytes:  4 << 20,
		WriteTimeout:      10 * time.Second,
		MaxInFlight:       16,
		StrictJobs:        true,
		MaxLease:          10 * time.Minute,
		LeaseSkew:         time.Minute,
		AliveAfter:        heartbeat.MaxAge,
		LogLevel:          logging.Level{Level: zerolog.InfoLevel},
	}
}

// RegisterFlags binds every setting to a flag on fs, with the defaults of DefaultConfig.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	*c = DefaultConfig()
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve websocket, NIP-11 and /api on")
	fs.StringVar(&c.Data, "data", c.Data, "folder of the embedded LMDB event store")
	fs.StringVar(&c.Name, "name", c.Name, "relay name for NIP-11")
	fs.StringVar(&c.Description, "description", c.Description, "relay description for NIP-11")
	fs.StringVar(&c.Pubkey, "pubkey", c.Pubkey, "operator's hex pubkey for NIP-11")
	fs.StringVar(&c.Contact, "contact", c.Contact, "operator contact for NIP-11")
	fs.BoolVar(&c.Web, "web", c.Web, "serve the market page (live job board, workers, charts, post a job) at / to browsers")
	fs.StringVar(&c.WebTitle, "web-title", c.WebTitle, "the market page's title (default: --name)")
	fs.IntVar(&c.MaxEventBytes, "max-event-bytes", c.MaxEventBytes, "largest serialized event accepted")
	fs.IntVar(&c.MaxTags, "max-tags", c.MaxTags, "most tags on one event")
	fs.DurationVar(&c.MaxPast, "max-past", c.MaxPast, "oldest created_at accepted, relative to now")
	fs.DurationVar(&c.MaxFuture, "max-future", c.MaxFuture, "furthest-ahead created_at accepted, relative to now")
	fs.Var(&c.Kinds, "kinds", "kinds accepted for writing: comma-separated kinds and ranges")
	fs.Float64Var(&c.IPRate, "ip-rate", c.IPRate, "events per second per IP address (0: no limit)")
	fs.IntVar(&c.IPBurst, "ip-burst", c.IPBurst, "burst of events per IP address")
	fs.Float64Var(&c.PubkeyRate, "pubkey-rate", c.PubkeyRate, "events per second per author (0: no limit)")
	fs.IntVar(&c.PubkeyBurst, "pubkey-burst", c.PubkeyBurst, "burst of events per author")
	fs.Float64Var(&c.AuthRate, "auth-rate", c.AuthRate, "events per second per pubkey on a connection authenticated (NIP-42) as that pubkey, instead of the IP and pubkey limits (0: those apply)")
	fs.IntVar(&c.AuthBurst, "auth-burst", c.AuthBurst, "burst of events per authenticated pubkey")
	fs.Float64Var(&c.NWCRate, "nwc-rate", c.NWCRate, "NIP-47 wallet events (kinds 23194-23197) per second, per pubkey and per IP (0: no limit)")
	fs.IntVar(&c.NWCBurst, "nwc-burst", c.NWCBurst, "burst of NIP-47 wallet events")
	fs.Float64Var(&c.ReqRate, "req-rate", c.ReqRate, "REQs and COUNTs per second per IP address (0: no limit)")
	fs.IntVar(&c.ReqBurst, "req-burst", c.ReqBurst, "burst of REQs and COUNTs per IP address")
	fs.Func("trusted-pubkeys", "comma-separated hex pubkeys that publish without rate limits (the operator's --pubkey always does)", func(s string) error {
		keys, err := parsePubkeys(s)
		c.TrustedPubkeys = keys
		return err
	})
	fs.Var(&c.TrustedProxies, "trusted-proxies", "comma-separated CIDR prefixes of reverse proxies whose X-Forwarded-For/X-Real-IP name the client (default none: the peer address counts)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "open websocket connections per client IP (0: no limit)")
	fs.IntVar(&c.MaxSubscriptions, "max-subscriptions", c.MaxSubscriptions, "open subscriptions per connection")
	fs.IntVar(&c.MaxFilters, "max-filters", c.MaxFilters, "filters in one REQ")
	fs.IntVar(&c.MaxFilterValues, "max-filter-values", c.MaxFilterValues, "ids, authors, kinds and tag values in one REQ or COUNT")
	fs.IntVar(&c.MaxSubIDLength, "max-subid-length", c.MaxSubIDLength, "bytes of a subscription id")
	fs.IntVar(&c.MaxRequestBytes, "max-req-bytes", c.MaxRequestBytes, "bytes of any message but an EVENT (REQ, COUNT, CLOSE, AUTH); larger ones are refused unparsed")
	fs.IntVar(&c.MaxLimit, "max-limit", c.MaxLimit, "most stored events one filter returns")
	fs.IntVar(&c.DefaultLimit, "default-limit", c.DefaultLimit, "stored events a filter without a limit returns")
	fs.IntVar(&c.MaxQueriesPerConn, "max-queries-per-conn", c.MaxQueriesPerConn, "stored-event reads (REQ filters, COUNTs) in progress per connection; more wait")
	fs.IntVar(&c.MaxQueries, "max-queries", c.MaxQueries, "stored-event reads in a read transaction at once, relay-wide; more wait")
	fs.IntVar(&c.QueryScan, "query-scan", c.QueryScan, "index entries one filter or COUNT may visit (a filter gets what was found; a COUNT is refused)")
	fs.IntVar(&c.MaxOutboundBytes, "max-outbound-bytes", c.MaxOutboundBytes, "bytes queued for one connection; a connection that falls further behind is dropped")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "longest a write to one connection may take before it is dropped")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "messages of one connection handled at once; its further messages wait")
	fs.BoolVar(&c.AuthWrites, "auth-writes", c.AuthWrites, "require NIP-42 authentication to publish")
	fs.Func("allow-pubkeys", "comma-separated hex pubkeys allowed to publish (implies --auth-writes)", func(s string) error {
		keys, err := parsePubkeys(s)
		c.AllowPubkeys = keys
		return err
	})
	fs.IntVar(&c.JobPoW, "job-pow", c.JobPoW, "NIP-13 proof-of-work difficulty required on job requests (0: none)")
	fs.BoolVar(&c.GroupCommit, "group-commit", c.GroupCommit, "write events that arrive together in one transaction with one disk sync (OK true still means stored)")
	fs.DurationVar(&c.CommitDelay, "commit-delay", c.CommitDelay, "longest a group commit waits for the last commit's writers to come back, so clients waiting for each OK share a disk sync (at most the last commit's own time; 0: no wait)")
	fs.BoolVar(&c.StrictJobs, "strict-jobs", c.StrictJobs, "refuse malformed NIP-90 requests, results and feedback with the parser's reason")
	fs.DurationVar(&c.MaxLease, "max-lease", c.MaxLease, "longest job lease a worker may claim")
	fs.DurationVar(&c.LeaseSkew, "lease-skew", c.LeaseSkew, "how far a lease claim's created_at may be from the relay clock")
	fs.DurationVar(&c.AliveAfter, "alive-after", c.AliveAfter, "/api/workers: a worker is alive while its last heartbeat (kind 11998) is at most this old")
	fs.Var(&c.LogLevel, "log-level", "log level: debug, info, warn, error")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Data == "":
		return fmt.Errorf("relay config: --data is empty")
	case c.CommitDelay < 0 || c.CommitDelay > time.Second:
		return fmt.Errorf("relay config: --commit-delay %s is not within 0 to 1s", c.CommitDelay)
	case c.MaxEventBytes < 1024:
		return fmt.Errorf("relay config: --max-event-bytes %d is below 1024", c.MaxEventBytes)
	case c.MaxTags < 1:
		return fmt.Errorf("relay config: --max-tags must be positive")
	case c.MaxPast <= 0 || c.MaxFuture <= 0:
		return fmt.Errorf("relay config: --max-past and --max-future must be positive")
	case c.MaxLease < time.Second:
		return fmt.Errorf("relay config: --max-lease %s is below 1s", c.MaxLease)
	case c.AliveAfter < time.Second:
		return fmt.Errorf("relay config: --alive-after %s is below 1s", c.AliveAfter)
	case c.LeaseSkew < 0:
		return fmt.Errorf("relay config: --lease-skew is negative")
	case c.IPRate < 0 || c.PubkeyRate < 0 || c.AuthRate < 0 || c.NWCRate < 0 || c.ReqRate < 0:
		return fmt.Errorf("relay config: rates must not be negative")
	case c.IPRate > 0 && c.IPBurst < 1, c.PubkeyRate > 0 && c.PubkeyBurst < 1, c.AuthRate > 0 && c.AuthBurst < 1,
		c.NWCRate > 0 && c.NWCBurst < 1, c.ReqRate > 0 && c.ReqBurst < 1:
		return fmt.Errorf("relay config: a rate limit needs a burst of at least 1")
	case c.MaxConnsPerIP < 0:
		return fmt.Errorf("relay config: --max-conns-per-ip must not be negative")
	case c.MaxSubscriptions < 1 || c.MaxFilters < 1 || c.MaxFilterValues < 1 || c.MaxSubIDLength < 1:
		return fmt.Errorf("relay config: --max-subscriptions, --max-filters, --max-filter-values and --max-subid-length must be positive")
	case c.MaxRequestBytes < 4096:
		return fmt.Errorf("relay config: --max-req-bytes %d is below 4096", c.MaxRequestBytes)
	case c.MaxLimit < 1 || c.DefaultLimit < 1 || c.DefaultLimit > c.MaxLimit:
		return fmt.Errorf("relay config: need 1 <= --default-limit <= --max-limit")
	case c.MaxQueriesPerConn < 1 || c.MaxQueries < 1 || c.MaxQueries > maxReaders/2:
		return fmt.Errorf("relay config: --max-queries-per-conn must be positive and --max-queries within 1..%d (half of the store's reader slots)", maxReaders/2)
	case c.QueryScan < 1:
		return fmt.Errorf("relay config: --query-scan must be positive")
	case c.MaxOutboundBytes < 2*c.MaxEventBytes+1024:
		return fmt.Errorf("relay config: --max-outbound-bytes %d must hold two of the largest events (%d)", c.MaxOutboundBytes, 2*c.MaxEventBytes+1024)
	case c.WriteTimeout < time.Second:
		return fmt.Errorf("relay config: --write-timeout %s is below 1s", c.WriteTimeout)
	case c.MaxInFlight < 1:
		return fmt.Errorf("relay config: --max-in-flight must be positive")
	case c.JobPoW < 0 || c.JobPoW > 256:
		return fmt.Errorf("relay config: --job-pow must be within 0..256")
	case len(c.Kinds) == 0:
		return fmt.Errorf("relay config: --kinds admits nothing")
	}
	if c.Pubkey != "" && !isHex32(c.Pubkey) {
		return fmt.Errorf("relay config: --pubkey must be 64 lowercase hex characters")
	}
	return nil
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// KindRange is an inclusive range of event kinds.
type KindRange struct{ Min, Max int }

// KindSet is a list of kind ranges; it is a flag.Value written like "0,5,5000-5999".
type KindSet []KindRange

// ParseKindSet parses "0,5,5000-5999".
func ParseKindSet(s string) (KindSet, error) {
	var ks KindSet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		min, err := strconv.Atoi(lo)
		max := min
		if err == nil && isRange {
			max, err = strconv.Atoi(hi)
		}
		if err != nil || min < 0 || max < min || max > 65535 {
			return nil, fmt.Errorf("kind set: %q is not a kind or a kind range within 0-65535", part)
		}
		ks = append(ks, KindRange{min, max})
	}
	slices.SortFunc(ks, func(a, b KindRange) int { return a.Min - b.Min })
	return ks, nil
}

// Has reports whether kind is in the set.
func (ks KindSet) Has(kind int) bool {
	for _, r := range ks {
		if kind >= r.Min && kind <= r.Max {
			return true
		}
	}
	return false
}

// String writes the set back in flag form.
func (ks KindSet) String() string {
	parts := make([]string, len(ks))
	for i, r := range ks {
		if r.Min == r.Max {
			parts[i] = strconv.Itoa(r.Min)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Min, r.Max)
		}
	}
	return strings.Join(parts, ",")
}

// Set parses a flag value.
func (ks *KindSet) Set(s string) error {
	v, err := ParseKindSet(s)
	if err != nil {
		return err
	}
	*ks = v
	return nil
}

func parsePubkeys(s string) ([]string, error) {
	var keys []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !isHex32(k) {
			return nil, fmt.Errorf("pubkey %q is not 64 lowercase hex characters", k)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func isHex32(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Level is the configured log level.
func (c *Config) Level() zerolog.Level { return c.LogLevel.Level }

// maxReaders is the number of LMDB reader slots the store opens with; --max-queries stays
// well below it, so the relay's own reads (the job table, duplicate checks) always find one.
const maxReaders = 256

// RateLimits are the publishing limits this config sets (see RateLimits). The operator's
// --pubkey is always trusted.
func (c *Config) RateLimits() RateLimits {
	l := RateLimits{
		IP:      Rate{c.IPRate, c.IPBurst},
		Pubkey:  Rate{c.PubkeyRate, c.PubkeyBurst},
		Authed:  Rate{c.AuthRate, c.AuthBurst},
		NWC:     Rate{c.NWCRate, c.NWCBurst},
		Trusted: slices.Clone(c.TrustedPubkeys),
	}
	if c.Pubkey != "" && !slices.Contains(l.Trusted, c.Pubkey) {
		l.Trusted = append(l.Trusted, c.Pubkey)
	}
	return l
}
