package relay

import (
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip90"
)

// quote is k's payment-required feedback on job for msat, made at at.
func quote(t testing.TB, k key, job nostr.Event, at time.Time, msat int64) nostr.Event {
	return k.sign(t, nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Timestamp(at.Unix()), Tags: nostr.Tags{
		{"status", "payment-required"}, {"e", job.ID}, {"p", job.PubKey}, {"amount", strconv.FormatInt(msat, 10)},
	}})
}

// paidResult is k's result on job carrying its own amount (a post-pay worker's invoice).
func paidResult(t testing.TB, k key, job nostr.Event, at time.Time, msat int64) nostr.Event {
	return k.sign(t, nostr.Event{Kind: job.Kind + 1000, CreatedAt: nostr.Timestamp(at.Unix()), Tags: nostr.Tags{
		{"e", job.ID}, {"p", job.PubKey}, {"request", job.String()}, {"amount", strconv.FormatInt(msat, 10), "lnbc..."},
	}, Content: "HELLO WORLD"})
}

func median(v float64) *float64 { return &v }

func sameMedians(a, b []*float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || a[i] != nil && *a[i] != *b[i] {
			return false
		}
	}
	return true
}

func fmtMedians(xs []*float64) string {
	var s []string
	for _, x := range xs {
		if x == nil {
			s = append(s, "null")
		} else {
			s = append(s, strconv.FormatFloat(*x, 'f', -1, 64))
		}
	}
	return "[" + strings.Join(s, " ") + "]"
}

func checkJobSeries(t *testing.T, what string, got, want JobSeries) {
	t.Helper()
	if !slicesEqual(got.Posted, want.Posted) || !slicesEqual(got.Done, want.Done) ||
		!slicesEqual(got.DeliveredMsat, want.DeliveredMsat) || !sameMedians(got.MedianSecondsToResult, want.MedianSecondsToResult) {
		t.Fatalf("%s:\n got posted %v done %v delivered %v median %s\nwant posted %v done %v delivered %v median %s", what,
			got.Posted, got.Done, got.DeliveredMsat, fmtMedians(got.MedianSecondsToResult),
			want.Posted, want.Done, want.DeliveredMsat, fmtMedians(want.MedianSecondsToResult))
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The job table counts, per minute of the events' created_at, jobs posted, results, the median
// seconds from request to result, and the quoted price of what was delivered: the deliverer's
// newest quote, else the amount on a post-pay result. Events a day old or further ahead than
// the skew are not counted.
func TestSeriesJobTable(t *testing.T) {
	jt, fold, at := ledgerTable(t) // its clock starts on a minute: at(0..59) is minute 0
	c, a, b := newKey(t), newKey(t), newKey(t)
	var events []*nostr.Event
	store := func(evt nostr.Event) {
		t.Helper()
		fold(evt)
		events = append(events, &evt)
	}
	job := func(s int64, n string) nostr.Event {
		r := jobRequest(t, c, at(s), nostr.Tag{"param", "n", n})
		store(r)
		return r
	}

	// j1: quoted by a (3000, then 4000) and by b (9000); a delivers 70 s after the request
	j1 := job(0, "1")
	store(quote(t, a, j1, at(1), 3000))
	store(quote(t, b, j1, at(2), 9000))
	store(quote(t, a, j1, at(3), 4000))
	store(claim(t, a, j1, at(4), time.Minute))
	store(result(t, a, j1, at(70)))
	// j2: post-pay, never quoted: b's result carries 2000 msat, 10 s after the request
	j2 := job(65, "2")
	store(claim(t, b, j2, at(66), time.Minute))
	store(paidResult(t, b, j2, at(75), 2000))
	// j3: quoted 9000 msat over its 5000 bid, done 40 s after the request: it counts the bid,
	// all any customer of ours would pay; j4 stays open
	j3 := job(80, "3")
	store(quote(t, a, j3, at(80), 9000))
	store(claim(t, a, j3, at(80), time.Minute))
	store(result(t, a, j3, at(120)))
	job(121, "4")
	// with the clock at 121 (minute 2): a request a day old and one further ahead than the
	// skew (a minute) are in the table, not in the series; one 23:59 old and one a minute
	// ahead are counted in their minutes
	old := jobRequest(t, c, at(121).Add(-24*time.Hour), nostr.Tag{"param", "n", "old"})
	store(old)
	store(jobRequest(t, c, at(121).Add(5*time.Minute), nostr.Tag{"param", "n", "ahead"}))
	store(jobRequest(t, c, at(121).Add(-24*time.Hour+time.Minute), nostr.Tag{"param", "n", "edge"}))
	store(jobRequest(t, c, at(121).Add(time.Minute), nostr.Tag{"param", "n", "next"}))

	at(121)
	end := at(121).Unix() / 60
	want := JobSeries{
		Posted:                []int{0, 1, 2, 1},
		Done:                  []int{0, 0, 2, 1},
		MedianSecondsToResult: []*float64{nil, nil, median(40), median(40)}, // minute 1: 70 and 10
		DeliveredMsat:         []int64{0, 0, 6000, 5000},
	}
	checkJobSeries(t, "folded", jt.Series(end, 4), want)
	if _, ok := jt.Lookup(old.ID); !ok {
		t.Fatal("the day-old request left the table; only the series should skip it")
	}

	// minutes 2-1440 .. 2+5, more than the API shows, to see what lies outside the window
	wide := jt.Series(end+5, seriesMinutes+6)
	var total int
	for _, n := range wide.Posted {
		total += n
	}
	if total != 6 || wide.Posted[1] != 1 || wide.Posted[len(wide.Posted)-5] != 1 {
		t.Fatalf("%d posted in the ring, %d at minute 2-1439, %d at minute 3: want 6, 1, 1", total, wide.Posted[1], wide.Posted[len(wide.Posted)-5])
	}

	jt.Rebuild(events)
	checkJobSeries(t, "rebuilt from the same events", jt.Series(end, 4), want)
}

// A minute keeps at most seriesSamples result times; its median is over the latest ones. The
// delivered msat saturate rather than wrap.
func TestSeriesSamplesBounded(t *testing.T) {
	s := newJobSeries(time.Minute)
	now := time.Unix(1_800_000_000, 0)
	for i := range 3 * seriesSamples {
		s.done(nostr.Timestamp(now.Unix()), int64(i), 1, now)
	}
	v := s.view(now.Unix()/60, 1)
	if v.Done[0] != 3*seriesSamples || v.DeliveredMsat[0] != 3*seriesSamples {
		t.Fatalf("done %v delivered %v, want every result counted", v.Done, v.DeliveredMsat)
	}
	// the latest 64 are 128..191: median (159+160)/2
	if m := v.MedianSecondsToResult[0]; m == nil || *m != 159.5 {
		t.Fatalf("median %s, want 159.5", fmtMedians(v.MedianSecondsToResult))
	}
	s.done(nostr.Timestamp(now.Unix()), 0, math.MaxInt64, now)
	s.done(nostr.Timestamp(now.Unix()), 0, math.MaxInt64, now)
	if v := s.view(now.Unix()/60, 1); v.DeliveredMsat[0] != math.MaxInt64 {
		t.Fatalf("delivered %d, want it saturated at %d", v.DeliveredMsat[0], int64(math.MaxInt64))
	}
}

// At most maxRefusalReasons prefixes are counted by name; the rest are "other".
func TestSeriesRefusalReasonsBounded(t *testing.T) {
	var s refusalSeries
	now := time.Unix(1_800_000_000, 0)
	for i := range maxRefusalReasons + 5 {
		s.add("reason"+strconv.Itoa(i), now)
	}
	s.add("reason0", now)
	got := s.view(now.Unix()/60, 2)
	if len(got) != maxRefusalReasons+1 || !slicesEqual(got[otherReason], []int{0, 5}) || !slicesEqual(got["reason0"], []int{0, 2}) {
		t.Fatalf("%d reasons: other %v, reason0 %v", len(got), got[otherReason], got["reason0"])
	}
}

// getStatus GETs url and returns the status, the CORS header and the body.
func getStatus(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), string(body)
}

// GET /api/series on a real relay: quotes and results count in the minute of their
// created_at, a result published after a restart still counts (and what came before is
// rebuilt from the store), refusals count by prefix in memory only, and ?minutes is checked.
func TestSeriesAPI(t *testing.T) {
	clk := newClock()
	clk.Advance(-time.Duration(clk.Now().UnixNano() % int64(time.Minute))) // on a minute
	t0 := clk.Now()
	cfg := testConfig(t)
	cfg.Now = clk.Now
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	customer, a, b := newKey(t), newKey(t), newKey(t)
	ok := func(evt nostr.Event) {
		t.Helper()
		if msg := publish(t, c, evt); msg != "" {
			t.Fatalf("kind %d refused: %s", evt.Kind, msg)
		}
	}
	sec := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	j1 := jobRequest(t, customer, sec(0), nostr.Tag{"param", "n", "1"})
	j2 := jobRequest(t, customer, sec(1), nostr.Tag{"param", "n", "2"})
	ok(j1)
	ok(j2)
	ok(quote(t, a, j1, sec(2), 3000))
	ok(claim(t, a, j1, sec(3), 5*time.Minute))
	ok(claim(t, b, j2, sec(3), 5*time.Minute))
	clk.Advance(20 * time.Second)
	ok(result(t, a, j1, sec(20))) // minute 0: done in 20 s for a's 3000 msat quote
	if msg := publish(t, c, customer.sign(t, nostr.Event{Kind: 1, Content: "a note"})); !strings.HasPrefix(msg, "blocked:") {
		t.Fatalf("kind 1: %q, want blocked", msg)
	}

	var s Series
	getJSON(t, tr.http+"/api/series?minutes=2", nil, &s)
	if s.MinuteSeconds != 60 || s.Minutes != 2 || s.End != t0.Unix() || len(s.Posted) != 2 {
		t.Fatalf("series %+v, want 2 minutes ending with the one starting %d", s, t0.Unix())
	}
	checkJobSeries(t, "before restart", s.JobSeries, JobSeries{
		Posted: []int{0, 2}, Done: []int{0, 1}, MedianSecondsToResult: []*float64{nil, median(20)}, DeliveredMsat: []int64{0, 3000},
	})
	if !slicesEqual(s.Refused["blocked"], []int{0, 1}) {
		t.Fatalf("refused %v, want the kind 1 note blocked this minute", s.Refused)
	}

	tr.restart()
	c = tr.connect(t)
	clk.Advance(60 * time.Second)
	ok(paidResult(t, b, j2, sec(80), 2500)) // minute 1: post-pay, 79 s after its request

	s = Series{}
	getJSON(t, tr.http+"/api/series?minutes=3", nil, &s)
	if s.End != t0.Unix()+60 || len(s.Done) != 3 {
		t.Fatalf("series %+v, want 3 minutes ending with the one starting %d", s, t0.Unix()+60)
	}
	checkJobSeries(t, "after restart", s.JobSeries, JobSeries{
		Posted: []int{0, 2, 0}, Done: []int{0, 1, 1}, MedianSecondsToResult: []*float64{nil, median(20), median(79)},
		DeliveredMsat: []int64{0, 3000, 2500},
	})
	if len(s.Refused) != 0 {
		t.Fatalf("refused %v after a restart, want none (they are kept in memory only)", s.Refused)
	}

	s = Series{}
	getJSON(t, tr.http+"/api/series", nil, &s)
	if s.Minutes != 60 || len(s.Posted) != 60 || len(s.MedianSecondsToResult) != 60 || s.Posted[58] != 2 {
		t.Fatalf("default: %d minutes, posted %v", s.Minutes, s.Posted)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"minutes=1", 200}, {"minutes=1440", 200},
		{"minutes=0", 400}, {"minutes=1441", 400}, {"minutes=-3", 400}, {"minutes=ten", 400}, {"minutes=", 200},
	} {
		status, cors, body := getStatus(t, tr.http+"/api/series?"+tc.query)
		if status != tc.want || cors != "*" && status == 200 {
			t.Errorf("?%s: %d (CORS %q), want %d: %s", tc.query, status, cors, tc.want, body)
		}
		if status == 400 && !strings.HasPrefix(body, "invalid: ") {
			t.Errorf("?%s: body %q, want an invalid: reason", tc.query, body)
		}
	}
}
