package relay

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/envflag"
)

func TestParseKindSet(t *testing.T) {
	tests := []struct {
		in      string
		has     []int
		hasNot  []int
		wantErr bool
	}{
		{in: DefaultKinds, has: []int{0, 5, 5000, 5999, 6500, 7000, 13194, 23194, 23197, 31989, 31990, 10002}, hasNot: []int{1, 4, 4999, 7001, 23198, 30023}},
		{in: "1, 2 ,3-4", has: []int{1, 2, 3, 4}, hasNot: []int{0, 5}},
		{in: "5-3", wantErr: true},
		{in: "x", wantErr: true},
		{in: "70000", wantErr: true},
		{in: "-1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			ks, err := ParseKindSet(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			for _, k := range tc.has {
				if !ks.Has(k) {
					t.Errorf("kind %d missing from %s", k, ks)
				}
			}
			for _, k := range tc.hasNot {
				if ks.Has(k) {
					t.Errorf("kind %d admitted by %s", k, ks)
				}
			}
			if err == nil {
				again, err := ParseKindSet(ks.String())
				if err != nil || again.String() != ks.String() {
					t.Errorf("%s does not round-trip: %s, %v", ks, again, err)
				}
			}
		})
	}
}

func TestFlagsAndEnv(t *testing.T) {
	t.Setenv("SPARECYCLES_RELAY_MAX_LEASE", "2m")
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	var cfg Config
	cfg.RegisterFlags(fs)
	if _, err := envflag.Parse(fs, envflag.Prefix("relay"), []string{"--listen", "127.0.0.1:0", "--kinds", "5000-5999", "--allow-pubkeys", "aa"}); err == nil {
		t.Fatal("a malformed pubkey in --allow-pubkeys was accepted")
	}
	fs = flag.NewFlagSet("relay", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if _, err := envflag.Parse(fs, envflag.Prefix("relay"), []string{"--listen", "127.0.0.1:0", "--kinds", "5000-5999"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:0" || cfg.MaxLease != 2*time.Minute || !cfg.Kinds.Has(5001) || cfg.Kinds.Has(7000) {
		t.Fatalf("config %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTokenBucket(t *testing.T) {
	clk := newClock()
	tb := newTokenBucket(2, 3, clk.Now) // 2/s, burst 3
	steps := []struct {
		advance time.Duration
		want    bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, // burst spent
		{400 * time.Millisecond, false},                            // 0.8 tokens
		{100 * time.Millisecond, true},                             // 1.0 token
		{10 * time.Second, true}, {0, true}, {0, true}, {0, false}, // refilled to the burst, no more
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if got := tb.allow("k"); got != s.want {
			t.Fatalf("step %d: allow = %v, want %v", i, got, s.want)
		}
	}
	if !tb.allow("other") {
		t.Fatal("a second key shares the first key's bucket")
	}
}

func TestPolicies(t *testing.T) {
	clk := newClock()
	now := nostr.Timestamp(clk.Now().Unix())
	tests := []struct {
		name   string
		policy policy
		evt    nostr.Event
		want   string
	}{
		{"window ok", RejectOutsideWindow(time.Hour, time.Minute, clk.Now), nostr.Event{CreatedAt: now}, ""},
		{"window past", RejectOutsideWindow(time.Hour, time.Minute, clk.Now), nostr.Event{CreatedAt: now - 3601}, "invalid: created_at"},
		{"window future", RejectOutsideWindow(time.Hour, time.Minute, clk.Now), nostr.Event{CreatedAt: now + 61}, "invalid: created_at"},
		{"not expired", RejectExpired(clk.Now), nostr.Event{Tags: nostr.Tags{{"expiration", "99999999999"}}}, ""},
		{"expired", RejectExpired(clk.Now), nostr.Event{Tags: nostr.Tags{{"expiration", "1"}}}, "invalid: event expired at 1"},
		{"kind allowed", AllowKinds(KindSet{{5000, 5999}}), nostr.Event{Kind: 5100}, ""},
		{"kind refused", AllowKinds(KindSet{{5000, 5999}}), nostr.Event{Kind: 1}, "blocked: kind 1"},
		{"pow ignores non-jobs", RequireJobPoW(30), nostr.Event{Kind: 0, ID: "ff"}, ""},
		{"tags ok", RejectTooManyTags(1), nostr.Event{Tags: nostr.Tags{{"t", "a"}}}, ""},
		{"tags over", RejectTooManyTags(1), nostr.Event{Tags: nostr.Tags{{"t", "a"}, {"t", "b"}}}, "invalid: 2 tags"},
		{"size ok", RejectOversizedEvent(200), nostr.Event{Content: "x"}, ""},
		{"size over", RejectOversizedEvent(200), nostr.Event{Content: string(make([]byte, 150))}, "invalid: event is"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reject, msg := tc.policy(context.Background(), &tc.evt)
			if reject != (tc.want != "") || len(msg) < len(tc.want) || msg[:len(tc.want)] != tc.want {
				t.Fatalf("policy = %v %q, want %q", reject, msg, tc.want)
			}
		})
	}
}

func FuzzParseKindSet(f *testing.F) {
	for _, s := range []string{DefaultKinds, "1, 2 ,3-4", "5-3", "x", "70000", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ks, err := ParseKindSet(s)
		if err != nil {
			return
		}
		again, err := ParseKindSet(ks.String())
		if err != nil || again.String() != ks.String() {
			t.Fatalf("%q parses to %s, which re-parses to %s, %v", s, ks, again, err)
		}
		for _, r := range ks {
			if !ks.Has(r.Min) || !ks.Has(r.Max) {
				t.Fatalf("%s does not hold its own range %v", ks, r)
			}
		}
	})
}

// TestCommitDelayFlag: --commit-delay reaches the config and stays within 0 to 1s.
func TestCommitDelayFlag(t *testing.T) {
	tests := []struct {
		arg     string
		want    time.Duration
		wantErr bool
	}{
		{"", 2 * time.Millisecond, false},
		{"--commit-delay=0", 0, false},
		{"--commit-delay=2ms", 2 * time.Millisecond, false},
		{"--commit-delay=-1ms", 0, true},
		{"--commit-delay=2s", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Data = t.TempDir()
			fs := flag.NewFlagSet("relay", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			var args []string
			if tc.arg != "" {
				args = []string{tc.arg}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate: %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && cfg.CommitDelay != tc.want {
				t.Fatalf("CommitDelay = %s, want %s", cfg.CommitDelay, tc.want)
			}
		})
	}
}
