package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
)

// offlineBeatWait bounds the last beat a link sends when the worker stops.
const offlineBeatWait = 3 * time.Second

// beatStatus is what the heartbeat says the worker is doing: paused while its owner needs the
// machine (spare cycles), busy while every job slot of every model is taken, else ready.
func (w *Worker) beatStatus() string {
	if paused, _ := w.Paused(); paused {
		return heartbeat.StatusPaused
	}
	if slots := int64(w.cfg.Parallel * len(w.models)); slots > 0 && w.running.Load() >= slots {
		return heartbeat.StatusBusy
	}
	return heartbeat.StatusReady
}

// queueDepth is the number of jobs waiting to run, paid ones included.
func (w *Worker) queueDepth() int {
	n := 0
	for _, m := range w.models {
		n += len(w.lanes[m]) + len(w.paid[m])
	}
	return n
}

// beat builds and signs a heartbeat with status. Each beat's created_at is later than the one
// before (a second later when they fall in the same second): a heartbeat is replaceable, and of
// two with the same created_at a relay keeps the one with the lower id, so an offline beat
// sent in the second of the beat on connect could otherwise lose to it.
func (w *Worker) beat(status string) (nostr.Event, error) {
	var at int64
	for {
		last := w.beatAt.Load()
		at = max(time.Now().Unix(), last+1)
		if w.beatAt.CompareAndSwap(last, at) {
			break
		}
	}
	evt := heartbeat.Beat{
		Identifier: announcementID, Status: status, Queue: w.queueDepth(), Kinds: w.kinds(), Provider: w.rt.Provider(),
		CreatedAt: nostr.Timestamp(at),
	}.Event()
	return evt, w.key.Sign(&evt)
}

// heartbeat publishes a beat on every link every Heartbeat until ctx ends (the last, offline
// beat is each link's: see link.lastBeat). A link also beats when it connects.
func (w *Worker) heartbeat(ctx context.Context) {
	if w.cfg.Heartbeat <= 0 {
		return
	}
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		evt, err := w.beat(w.beatStatus())
		if err != nil {
			w.log.Error().Err(err).Msg("sign heartbeat")
			continue
		}
		for _, l := range w.links {
			if l.up() {
				l.publishAsync(ctx, evt)
			}
		}
	}
}

// beatNow publishes a beat on this link at once (when it connects).
func (l *link) beatNow(ctx context.Context) {
	if l.w.cfg.Heartbeat <= 0 {
		return
	}
	evt, err := l.w.beat(l.w.beatStatus())
	if err != nil {
		l.log.Error().Err(err).Msg("sign heartbeat")
		return
	}
	l.publishAsync(ctx, evt)
}

// lastBeat tells the relay on conn that the worker goes offline, waiting at most
// offlineBeatWait for its OK.
func (l *link) lastBeat(conn *relayconn.Conn) {
	if l.w.cfg.Heartbeat <= 0 {
		return
	}
	evt, err := l.w.beat(heartbeat.StatusOffline)
	if err != nil {
		l.log.Error().Err(err).Msg("sign heartbeat")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), offlineBeatWait)
	defer cancel()
	if ok, err := conn.Publish(ctx, evt); err != nil || !ok.Accepted {
		l.log.Debug().Err(err).Str("reason", ok.Reason).Msg("offline heartbeat not accepted")
	}
}

// answerAuth answers the relay's NIP-42 challenge whenever it sends one during this
// connection, so the relay can tie the connection's job subscription to the worker's pubkey.
// It returns when ctx ends or the connection closes; wg tracks it.
func (l *link) answerAuth(ctx context.Context, conn *relayconn.Conn, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		ok, err := conn.Auth(ctx, l.w.key.Sign)
		switch {
		case errors.Is(err, relayconn.ErrNoAuth) || ctx.Err() != nil:
			// no challenge came before the connection ended
		case err != nil:
			l.log.Warn().Err(err).Msg("NIP-42 auth failed")
		case !ok.Accepted:
			l.log.Warn().Str("reason", ok.Reason).Msg("NIP-42 auth refused")
		default:
			l.log.Debug().Msg("authenticated (NIP-42)")
		}
	}()
}

// up reports whether the link is connected now.
func (l *link) up() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil
}
