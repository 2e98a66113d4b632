package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nbd-wtf/go-nostr/nip11"

	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/relay/web"
)

// Software is the NIP-11 software URL.
const Software = "https://github.com/sparecycles/sparecycles"

// InfoDocument is the relay's NIP-11 document: the standard fields plus the lease extension's
// advertisement under lease.InfoKey.
type InfoDocument struct {
	nip11.RelayInformationDocument
	JobLeases *lease.Info `json:"job_leases,omitempty"`
	// MaxEventBytes is the serialized-event limit, which NIP-11 has no field for.
	MaxEventBytes int `json:"max_event_bytes"`
	// MaxFilters is the most filters one REQ may carry (NIP-11 dropped its max_filters).
	MaxFilters int `json:"max_filters"`
	// Limits are the per-connection and per-address bounds the relay enforces beyond NIP-11's.
	Limits Limits `json:"connection_limits"`
	// RateLimits say how publishing is throttled, by class of publisher (see RateLimits).
	RateLimits RateLimitInfo `json:"rate_limits"`
	// JobPoW is the NIP-13 difficulty required of job requests only (kinds 5000-5999).
	JobPoW int `json:"job_request_min_pow_difficulty,omitempty"`
	// StrictJobs says NIP-90 events are validated (nips/nip90) before they are stored.
	StrictJobs bool `json:"strict_nip90"`
	// Kinds lists the kinds accepted for writing.
	Kinds string `json:"accepted_kinds"`
}

// Limits is the connection_limits object of the NIP-11 document.
type Limits struct {
	MaxConnectionsPerIP int  `json:"max_connections_per_ip,omitempty"` // 0: none
	MaxFilterValues     int  `json:"max_filter_values"`                // ids, authors, kinds and tag values in one REQ or COUNT
	MaxRequestBytes     int  `json:"max_request_bytes"`                // of any message but an EVENT
	MaxQueriesPerConn   int  `json:"max_queries_per_connection"`       // stored-event reads in progress; more wait
	MaxIndexEntries     int  `json:"max_index_entries"`                // visited by one filter (it gets what was found) or COUNT (refused)
	MaxOutboundBytes    int  `json:"max_outbound_bytes"`               // queued for one connection before it is dropped
	WriteTimeoutSeconds int  `json:"write_timeout_seconds"`            // for one message to one connection
	MaxMessagesInFlight int  `json:"max_messages_in_flight"`           // handled at once per connection; more wait
	RequestsPerSecondIP Rate `json:"requests_per_ip"`                  // REQs and COUNTs
}

// RateLimitInfo is the rate_limits object of the NIP-11 document: events per second (0 = no
// limit) for each class of publisher, in the order they are tried.
type RateLimitInfo struct {
	TrustedPubkeys []string `json:"trusted_pubkeys"`   // not limited
	NWC            Rate     `json:"nwc"`               // kinds 23194-23197, per pubkey and per IP
	Authenticated  Rate     `json:"authenticated"`     // per pubkey, on a connection authenticated as it (NIP-42)
	PerIP          Rate     `json:"events_per_ip"`     // everyone else, per IP
	PerPubkey      Rate     `json:"events_per_pubkey"` // and per author
}

// Info returns the NIP-11 document. Every limitation is one the relay enforces.
func (r *Relay) Info() InfoDocument {
	nips := []any{1, 9, 11, 40, 42, 45, 70, 90}
	if r.cfg.JobPoW > 0 {
		nips = []any{1, 9, 11, 13, 40, 42, 45, 70, 90}
	}
	rl := r.cfg.RateLimits()
	if rl.Trusted == nil {
		rl.Trusted = []string{}
	}
	restricted := r.cfg.AuthWrites || len(r.cfg.AllowPubkeys) > 0 || r.cfg.JobPoW > 0
	return InfoDocument{
		RelayInformationDocument: nip11.RelayInformationDocument{
			Name:          r.cfg.Name,
			Description:   r.cfg.Description,
			PubKey:        r.cfg.Pubkey,
			Contact:       r.cfg.Contact,
			SupportedNIPs: nips,
			Software:      Software,
			Version:       Version,
			Limitation: &nip11.RelayLimitationDocument{
				MaxMessageLength:    int(r.kr.MaxMessageSize),
				MaxSubscriptions:    r.cfg.MaxSubscriptions,
				MaxSubidLength:      r.cfg.MaxSubIDLength,
				MaxLimit:            r.cfg.MaxLimit,
				DefaultLimit:        r.cfg.DefaultLimit,
				MaxEventTags:        r.cfg.MaxTags,
				MaxContentLength:    r.cfg.MaxEventBytes,
				CreatedAtLowerLimit: int64(r.cfg.MaxPast / time.Second),
				CreatedAtUpperLimit: int64(r.cfg.MaxFuture / time.Second),
				AuthRequired:        false,
				RestrictedWrites:    restricted,
			},
		},
		JobLeases: &lease.Info{
			Version:     lease.Version,
			MaxSeconds:  int(r.cfg.MaxLease / time.Second),
			SkewSeconds: int(r.cfg.LeaseSkew / time.Second),
		},
		MaxEventBytes: r.cfg.MaxEventBytes,
		MaxFilters:    r.cfg.MaxFilters,
		Limits: Limits{
			MaxConnectionsPerIP: r.cfg.MaxConnsPerIP,
			MaxFilterValues:     r.cfg.MaxFilterValues,
			MaxRequestBytes:     r.cfg.MaxRequestBytes,
			MaxQueriesPerConn:   r.cfg.MaxQueriesPerConn,
			MaxIndexEntries:     r.cfg.QueryScan,
			MaxOutboundBytes:    r.cfg.MaxOutboundBytes,
			WriteTimeoutSeconds: int(r.cfg.WriteTimeout / time.Second),
			MaxMessagesInFlight: r.cfg.MaxInFlight,
			RequestsPerSecondIP: Rate{r.cfg.ReqRate, r.cfg.ReqBurst},
		},
		RateLimits: RateLimitInfo{
			TrustedPubkeys: rl.Trusted, NWC: rl.NWC, Authenticated: rl.Authed, PerIP: rl.IP, PerPubkey: rl.Pubkey,
		},
		JobPoW:     r.cfg.JobPoW,
		StrictJobs: r.cfg.StrictJobs,
		Kinds:      r.cfg.Kinds.String(),
	}
}

func (r *Relay) handleNIP11(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Content-Type", "application/nostr+json")
	writeJSON(w, r.Info())
}

// handleJobs serves GET /api/jobs[?state=open&kind=5000&limit=100]: the job table, newest first.
func (r *Relay) handleJobs(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	limit := 500
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			http.Error(w, "invalid: limit must be 1..10000", http.StatusBadRequest)
			return
		}
		limit = n
	}
	state := JobState(q.Get("state"))
	switch state {
	case "", JobOpen, JobQuoted, JobLeased, JobDone, JobExpired:
	default:
		http.Error(w, fmt.Sprintf("invalid: state %q is not one of open, quoted, leased, done, expired", state), http.StatusBadRequest)
		return
	}
	kind := 0
	if s := q.Get("kind"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || !nip90.IsRequestKind(k) {
			http.Error(w, "invalid: kind must be a job request kind (5000-5999)", http.StatusBadRequest)
			return
		}
		kind = k
	}
	out := []JobView{}
	for _, v := range r.jobs.Views() {
		if (state == "" || v.State == state) && (kind == 0 || v.Kind == kind) {
			out = append(out, v)
			if len(out) == limit {
				break
			}
		}
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, map[string]any{"jobs": out})
}

// Stats is the body of GET /api/stats.
type Stats struct {
	Version        string           `json:"version"`
	UptimeSeconds  int64            `json:"uptime_seconds"`
	Connections    int64            `json:"connections"`
	EventsAccepted int64            `json:"events_accepted"`
	EventsRefused  map[string]int64 `json:"events_refused"`
	Jobs           JobCounts        `json:"jobs"`
	// Commits counts the store's write transactions (each one disk sync) and CommittedOps the
	// writes they carried: their ratio is how well group commit shares the syncs.
	Commits      int64 `json:"commits"`
	CommittedOps int64 `json:"committed_ops"`
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	r.stats.mu.Lock()
	refused := make(map[string]int64, len(r.stats.refused))
	for k, v := range r.stats.refused {
		refused[k] = v
	}
	r.stats.mu.Unlock()
	st := r.db.Stats()
	return Stats{
		Version:        Version,
		UptimeSeconds:  int64(r.cfg.now().Sub(r.start) / time.Second),
		Connections:    r.stats.connections.Load(),
		EventsAccepted: r.stats.accepted.Load(),
		EventsRefused:  refused,
		Jobs:           r.jobs.Counts(),
		Commits:        st.Commits,
		CommittedOps:   st.Ops,
	}
}

func (r *Relay) handleStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, r.Stats())
}

// Series is the body of GET /api/series: per-minute numbers for the last Minutes minutes,
// every array oldest first and Minutes long, its last entry the minute that starts at End.
type Series struct {
	MinuteSeconds int   `json:"minute_seconds"`
	End           int64 `json:"end"` // unix time the newest minute starts
	Minutes       int   `json:"minutes"`
	JobSeries
	// Refused counts refusals by reason prefix (only reasons refused in the window), by the
	// relay's clock; in memory only, so they start again at zero when the relay restarts.
	Refused map[string][]int `json:"refused"`
}

// Series returns the last n minutes of the series, up to and including the current one.
func (r *Relay) Series(n int) Series {
	end := r.cfg.now().Unix() / int64(seriesMinute/time.Second)
	r.stats.mu.Lock()
	refused := r.stats.series.view(end, n)
	r.stats.mu.Unlock()
	return Series{
		MinuteSeconds: int(seriesMinute / time.Second),
		End:           end * int64(seriesMinute/time.Second),
		Minutes:       n,
		JobSeries:     r.jobs.Series(end, n),
		Refused:       refused,
	}
}

// handleSeries serves GET /api/series[?minutes=60]: the numbers behind a market page's charts.
func (r *Relay) handleSeries(w http.ResponseWriter, req *http.Request) {
	n := 60
	if s := req.URL.Query().Get("minutes"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > seriesMinutes {
			http.Error(w, fmt.Sprintf("invalid: minutes must be 1..%d", seriesMinutes), http.StatusBadRequest)
			return
		}
		n = v
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, r.Series(n))
}

// handleHome serves the market page to browsers and a short plain-text note to anything else
// (NIP-11 and websocket upgrades never reach it: khatru answers those first).
func (r *Relay) handleHome(w http.ResponseWriter, req *http.Request) {
	if r.page != nil && web.WantsHTML(req) {
		r.page.ServeIndex(w, req)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%s — a sparecycles relay (%s %s)\n\nConnect a Nostr client to this address over websocket.\nGET /api/jobs  the job table\nGET /api/stats counters\nGET /api/series per-minute jobs posted, done, time to result, delivered msat, refusals\nGET /api/workers workers: connected, alive, jobs done\nNIP-11: send Accept: application/nostr+json\n", r.cfg.Name, Software, Version)
}

func writeJSON(w http.ResponseWriter, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
