package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/nips/heartbeat"
)

// Presence is what the relays say of a worker being online now.
type Presence struct {
	// Vouched: a relay's /api/workers lists the worker (the relay sees its connections);
	// otherwise only its heartbeat speaks for it.
	Vouched bool `json:"vouched"`
	// Connected: a relay sees a connection authenticated as the worker subscribed to job kinds.
	Connected bool `json:"connected"`
	// Alive: its last heartbeat (kind 11998) is at most 900 s old (the relay's threshold when it
	// says) and not "offline".
	Alive     bool   `json:"alive"`
	Status    string `json:"status,omitempty"` // the last heartbeat's: ready, busy, paused, offline
	Queue     *int   `json:"queue,omitempty"`
	BeatAt    int64  `json:"heartbeat_at,omitempty"`
	Kinds     []int  `json:"kinds,omitempty"` // from the relay's row or the heartbeat
	DoneDay   int    `json:"done_day,omitempty"`
	FailedDay int    `json:"failed_day,omitempty"`
	// Reviews and Rating: the paid reviews a relay counts for the worker (nips/review.md: each
	// with a proof of payment the relay checked) and their mean, 1 to 5. Reviews go to every
	// relay, so of several relays the one counting the most is taken, not their sum. (The
	// client's workers --json shows them beside the presence, not in it.)
	Reviews int     `json:"-"`
	Rating  float64 `json:"-"`
}

// Live reports whether the worker can be expected to answer a job now: connected when a relay
// vouches for it, else alive by its heartbeat; never while paused or offline.
func (p Presence) Live() bool {
	if p.Status == heartbeat.StatusPaused || p.Status == heartbeat.StatusOffline {
		return false
	}
	if p.Vouched {
		return p.Connected
	}
	return p.Alive
}

// Serves reports whether the worker serves kind, as far as its row or heartbeat says (no
// kinds known: true).
func (p Presence) Serves(kind int) bool {
	return kind == 0 || len(p.Kinds) == 0 || slices.Contains(p.Kinds, kind)
}

// ErrNoWorkersAPI: the relay does not serve /api/workers.
var ErrNoWorkersAPI = errors.New("client: relay serves no /api/workers")

// apiWorkers is the part of a relay's /api/workers the client reads.
type apiWorkers struct {
	Workers []struct {
		PubKey    string `json:"pubkey"`
		Kinds     []int  `json:"kinds"`
		Connected bool   `json:"connected"`
		Alive     bool   `json:"alive"`
		Heartbeat *struct {
			At     int64  `json:"at"`
			Status string `json:"status"`
			Queue  *int   `json:"queue"`
			Kinds  []int  `json:"kinds"`
		} `json:"heartbeat"`
		Jobs struct {
			DoneDay   int `json:"done_day"`
			FailedDay int `json:"failed_day"`
		} `json:"jobs"`
		Reviews int     `json:"reviews"`
		Rating  float64 `json:"rating"`
	} `json:"workers"`
}

// maxWorkersDoc bounds what is read of one relay's /api/workers.
const maxWorkersDoc = 4 << 20

// relayWorkers reads a relay's /api/workers (ws:// → http://, wss:// → https://).
func relayWorkers(ctx context.Context, relay string) (apiWorkers, error) {
	u, err := url.Parse(relay)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return apiWorkers{}, fmt.Errorf("client: relay %q is not a ws:// or wss:// URL", relay)
	}
	u.Scheme = "http" + strings.TrimPrefix(u.Scheme, "ws")
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/workers"
	u.RawQuery = "limit=500"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return apiWorkers{}, fmt.Errorf("client: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return apiWorkers{}, fmt.Errorf("client: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return apiWorkers{}, fmt.Errorf("%w (%s: %s)", ErrNoWorkersAPI, u, resp.Status)
	}
	var doc apiWorkers
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, maxWorkersDoc)).Decode(&doc); err != nil {
		return apiWorkers{}, fmt.Errorf("%w (%s: %v)", ErrNoWorkersAPI, u, err)
	}
	return doc, nil
}

// Presences says who is online, by pubkey. Relays that serve /api/workers vouch for what they
// see; for the others the workers' heartbeats (kind 11998) are read. A worker in neither is
// absent from the map. vouched is true when at least one relay served /api/workers.
func Presences(ctx context.Context, relays []string, log zerolog.Logger) (out map[string]Presence, vouched bool) {
	out = map[string]Presence{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var plain []string // relays without the API
	for _, r := range relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc, err := relayWorkers(ctx, r)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				log.Debug().Str("relay", r).Err(err).Msg("no /api/workers: reading heartbeats")
				plain = append(plain, r)
				return
			}
			vouched = true
			for _, w := range doc.Workers {
				p := out[w.PubKey]
				p.Vouched = true
				p.Connected = p.Connected || w.Connected
				p.Alive = p.Alive || w.Alive
				p.DoneDay += w.Jobs.DoneDay
				p.FailedDay += w.Jobs.FailedDay
				if len(p.Kinds) == 0 {
					p.Kinds = w.Kinds
				}
				if w.Reviews > p.Reviews && w.Rating >= 1 && w.Rating <= 5 {
					p.Reviews, p.Rating = w.Reviews, w.Rating
				}
				if hb := w.Heartbeat; hb != nil && hb.At > p.BeatAt {
					p.BeatAt, p.Status, p.Queue = hb.At, hb.Status, hb.Queue
					if len(p.Kinds) == 0 {
						p.Kinds = hb.Kinds
					}
				}
				out[w.PubKey] = p
			}
		}()
	}
	wg.Wait()
	if len(plain) == 0 {
		return out, vouched
	}
	evs, err := Query(ctx, plain, log, nostr.Filter{Kinds: []int{heartbeat.Kind}, Since: ptr(nostr.Timestamp(time.Now().Add(-heartbeat.MaxAge).Unix())), Limit: workersLimit})
	if err != nil {
		log.Debug().Err(err).Msg("read heartbeats")
		return out, vouched
	}
	now := time.Now()
	for _, evt := range evs { // oldest first
		b, err := heartbeat.Parse(evt)
		if err != nil {
			continue
		}
		p := out[evt.PubKey]
		if int64(b.CreatedAt) < p.BeatAt {
			continue
		}
		p.BeatAt, p.Status, p.Alive = int64(b.CreatedAt), b.Status, p.Alive || b.Alive(now, 0)
		if b.Queue >= 0 {
			q := b.Queue
			p.Queue = &q
		}
		if len(b.Kinds) > 0 {
			p.Kinds = b.Kinds
		}
		out[evt.PubKey] = p
	}
	return out, vouched
}
