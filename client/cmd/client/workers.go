package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

func workers(ctx context.Context, std stdio, c command, args []string) error {
	fs := newFlagSet(c)
	o := newOptions()
	o.relayFlag(fs)
	o.outputFlags(fs, 20*time.Second, "give up on relays that have not answered after this long")
	var kind int
	fs.IntVar(&kind, "kind", 0, "only workers serving this job kind (default: all)")
	positional, err := parse(fs, c, args, std)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("workers: unexpected argument %q", positional[0])
	}
	if kind != 0 && !nip90.IsRequestKind(kind) {
		return fmt.Errorf("workers: --kind %d is not a job kind (5000-5999)", kind)
	}
	if err := o.checkRelays(); err != nil {
		return fmt.Errorf("workers: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	hs, err := client.Workers(ctx, o.relays, kind, o.logger(std.errOut))
	if err != nil {
		return err
	}
	presences, vouched := client.Presences(ctx, o.relays, o.logger(std.errOut))
	// live workers first (Presence.Live), then as before: newest announcement first
	slices.SortStableFunc(hs, func(a, b *nip89.HandlerInfo) int {
		al, bl := presences[a.PubKey].Live(), presences[b.PubKey].Live()
		switch {
		case al && !bl:
			return -1
		case bl && !al:
			return 1
		}
		return 0
	})
	now := time.Now()
	if o.json {
		docs := make([]workerDoc, 0, len(hs))
		for _, h := range hs {
			d := workerDocOf(h, now)
			if p, ok := presences[h.PubKey]; ok {
				p.Kinds = nil // the announcement's are above
				d.Presence, d.Live = &p, p.Live()
				d.Reviews, d.Rating = p.Reviews, p.Rating
			}
			docs = append(docs, d)
		}
		return writeJSON(std.out, docs)
	}
	if len(hs) == 0 {
		fmt.Fprintln(std.errOut, "no workers announced on", strings.Join(o.relays, ", "))
		return nil
	}
	for i, h := range hs {
		if i > 0 {
			fmt.Fprintln(std.out)
		}
		writeWorker(std.out, h, now)
		p, listed := presences[h.PubKey]
		writePresence(std.out, p, listed, vouched, now)
	}
	return nil
}

// writePresence says whether the worker is online: what a relay sees (connected), what its
// heartbeat says (alive, status, queue), and its record on the relay. Nothing when no relay
// serves /api/workers and the worker sends no heartbeat.
func writePresence(w io.Writer, p client.Presence, listed, vouched bool, now time.Time) {
	if !listed && !vouched {
		return
	}
	var parts []string
	switch {
	case p.Connected:
		parts = append(parts, "connected")
	case vouched:
		parts = append(parts, "not connected")
	}
	switch {
	case p.BeatAt == 0:
		parts = append(parts, "no heartbeat")
	default:
		beat := "alive"
		if !p.Alive {
			beat = "not alive"
		}
		if p.Status != "" {
			beat += ", " + p.Status
		}
		if p.Queue != nil {
			beat += fmt.Sprintf(", queue %d", *p.Queue)
		}
		parts = append(parts, fmt.Sprintf("%s (heartbeat %s)", beat, age(now, nostr.Timestamp(p.BeatAt))))
	}
	live := "live"
	if !p.Live() {
		live = "not live"
	}
	fmt.Fprintf(w, "  online    %s: %s\n", live, strings.Join(parts, "; "))
	if p.Vouched && (p.DoneDay > 0 || p.FailedDay > 0) {
		fmt.Fprintf(w, "  record    %d done, %d failed in the last day\n", p.DoneDay, p.FailedDay)
	}
	if p.Reviews > 0 {
		fmt.Fprintf(w, "  reviews   %s\n", stars(p.Rating, p.Reviews))
	}
}

// stars reads "★4.5 (12 paid reviews)".
func stars(rating float64, n int) string {
	return fmt.Sprintf("★%.1f (%d paid review%s)", rating, n, plural(n))
}

// workerDoc is one worker in workers' --json document.
type workerDoc struct {
	PubKey     string        `json:"pubkey"`
	Npub       string        `json:"npub"`
	Name       string        `json:"name,omitempty"`
	About      string        `json:"about,omitempty"`
	Kinds      []int         `json:"kinds"`
	Provider   string        `json:"provider,omitempty"`
	Device     string        `json:"device,omitempty"`
	Payment    string        `json:"payment,omitempty"`
	Relays     []string      `json:"relays,omitempty"`
	Models     []nip89.Model `json:"models"`
	CreatedAt  int64         `json:"created_at"`
	AgeSeconds int64         `json:"age_seconds"`
	// Live and Presence: what the relays' /api/workers and the worker's heartbeats say of it
	// being online now (absent when nothing does).
	Live     bool             `json:"live"`
	Presence *client.Presence `json:"presence,omitempty"`
	// Reviews and Rating: the paid reviews a relay counts for the worker (nips/review.md) and
	// their mean, 1 to 5 (absent without reviews).
	Reviews int     `json:"reviews"`
	Rating  float64 `json:"rating,omitempty"`
}

func workerDocOf(h *nip89.HandlerInfo, now time.Time) workerDoc {
	d := workerDoc{PubKey: h.PubKey, Npub: npub(h.PubKey), Name: h.Metadata.Name, About: h.Metadata.About,
		Kinds: h.Kinds, Models: []nip89.Model{}, CreatedAt: int64(h.CreatedAt),
		AgeSeconds: int64(now.Sub(h.CreatedAt.Time()).Seconds())}
	if d.Kinds == nil {
		d.Kinds = []int{}
	}
	if w := h.Metadata.Worker; w != nil {
		d.Provider, d.Device, d.Payment, d.Relays = w.Provider, w.Device, w.Payment, w.Relays
		if w.Models != nil {
			d.Models = w.Models
		}
	}
	return d
}

func writeWorker(w io.Writer, h *nip89.HandlerInfo, now time.Time) {
	name := h.Metadata.Name
	if name == "" {
		name = "(no name)"
	}
	fmt.Fprintf(w, "%s  %s  last seen %s\n", npub(h.PubKey), name, age(now, h.CreatedAt))
	kinds := make([]string, len(h.Kinds))
	for i, k := range h.Kinds {
		kinds[i] = fmt.Sprint(k)
	}
	fmt.Fprintf(w, "  kinds     %s\n", orNone(strings.Join(kinds, ", ")))
	wk := h.Metadata.Worker
	if wk == nil {
		fmt.Fprintln(w, "  (a NIP-89 handler without the sparecycles extension)")
		return
	}
	provider := orNone(wk.Provider)
	if wk.Device != "" {
		provider += " (device " + wk.Device + ")"
	}
	fmt.Fprintf(w, "  provider  %s\n", provider)
	fmt.Fprintf(w, "  payment   %s\n", orNone(wk.Payment))
	for _, m := range wk.Models {
		fmt.Fprintf(w, "  model     %s, kind %d", m.Name, m.Kind)
		if m.Task != "" {
			fmt.Fprintf(w, ", %s", m.Task)
		}
		fmt.Fprintln(w)
		if len(m.SHA256) > 0 {
			var files []string
			for _, role := range slices.Sorted(maps.Keys(m.SHA256)) {
				files = append(files, role+" "+shortHash(m.SHA256[role]))
			}
			fmt.Fprintf(w, "            sha256 %s\n", strings.Join(files, ", "))
		}
		fmt.Fprintf(w, "            price  %s\n", price(m.Price))
		if len(m.Limits) > 0 {
			var lims []string
			for _, k := range slices.Sorted(maps.Keys(m.Limits)) {
				lims = append(lims, fmt.Sprintf("%s %d", k, m.Limits[k]))
			}
			fmt.Fprintf(w, "            limits %s\n", strings.Join(lims, ", "))
		}
	}
}

// price reads "1 sat + 10 msat per megapixel", or "free".
func price(p nip89.Price) string {
	if p.BaseMsat == 0 && p.PerUnitMsat == 0 {
		return "free"
	}
	s := msat(p.BaseMsat)
	if p.PerUnitMsat != 0 {
		unit := p.Unit
		if unit == "" {
			unit = "unit"
		}
		s += fmt.Sprintf(" + %s per %s", msat(p.PerUnitMsat), unit)
	}
	return s
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
