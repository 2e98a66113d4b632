package relay

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// With group commit, a job event whose save fails leaves the job table as it was: the lease
// reserved for a claim is released and a request that was never stored leaves no job.
func TestGroupCommitFailedSaveUndoesReservation(t *testing.T) {
	cfg := testConfig(t)
	r, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	customer, worker := newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	if err := r.storeEvent(context.Background(), &req); err != nil {
		t.Fatal(err)
	}
	r.db.Close() // from now on every save fails
	c := claim(t, worker, req, time.Now(), time.Minute)
	if err := r.storeJobEvent(&c); err == nil {
		t.Fatal("claim stored in a closed store")
	}
	if job, _ := r.jobs.Lookup(req.ID); job.Holder != "" || job.LeaseEvent != "" {
		t.Fatalf("failed claim left a lease: %+v", job)
	}
	req2 := jobRequest(t, customer, time.Now().Add(time.Second))
	if err := r.storeJobEvent(&req2); err == nil {
		t.Fatal("request stored in a closed store")
	}
	if _, ok := r.jobs.Lookup(req2.ID); ok {
		t.Fatal("failed request left a job")
	}
}

// Sending the same claim twice is accepted (OK true, as a duplicate) and keeps the lease.
func TestGroupCommitDuplicateClaim(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, worker := newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	cl := claim(t, worker, req, time.Now(), time.Minute)
	for _, evt := range []struct {
		name string
		msg  string
	}{{"request", publish(t, c, req)}, {"request again", publish(t, c, req)}, {"claim", publish(t, c, cl)}, {"claim again", publish(t, c, cl)}} {
		if evt.msg != "" {
			t.Fatalf("%s: %s", evt.name, evt.msg)
		}
	}
	job, ok := tr.r.jobs.Lookup(req.ID)
	if !ok || job.Holder != worker.pk || job.LeaseEvent != cl.ID {
		t.Fatalf("job after duplicate claim: %+v", job)
	}
}

// --group-commit=false keeps the old path: each save commits on its own under the table's lock.
func TestWithoutGroupCommit(t *testing.T) {
	cfg := testConfig(t)
	cfg.GroupCommit = false
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	customer, a, b := newKey(t), newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	if msg := publish(t, c, req); msg != "" {
		t.Fatal(msg)
	}
	if msg := publish(t, c, claim(t, a, req, time.Now(), time.Minute)); msg != "" {
		t.Fatal(msg)
	}
	if msg := publish(t, c, claim(t, b, req, time.Now(), time.Minute)); msg == "" {
		t.Fatal("second claim granted")
	}
}
