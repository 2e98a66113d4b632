package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// troubledPath is a websocket proxy in front of relayURL that passes everything both ways,
// except the first lease claim (processing feedback with a lease tag) a client sends: that one
// it answers itself, as a relay that is shutting down does, with OK false "error: relay is
// shutting down, try again shortly", and does not forward. Plain HTTP (NIP-11) is passed on.
// It returns the proxy's websocket URL and the number of claims it answered so.
func troubledPath(t *testing.T, relayURL string) (string, *atomic.Int32) {
	t.Helper()
	target, err := url.Parse(strings.Replace(relayURL, "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	http11 := httputil.NewSingleHostReverseProxy(target)
	var refused atomic.Int32
	var wg sync.WaitGroup
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			http11.ServeHTTP(rw, r)
			return
		}
		down, err := up.Upgrade(rw, r, nil)
		if err != nil {
			return
		}
		upstream, _, err := websocket.DefaultDialer.Dial(relayURL, nil)
		if err != nil {
			down.Close()
			return
		}
		var mu sync.Mutex // guards writes to down, from both directions
		wg.Add(2)
		go func() { // relay → client
			defer wg.Done()
			defer down.Close()
			for {
				typ, msg, err := upstream.ReadMessage()
				if err != nil {
					return
				}
				mu.Lock()
				err = down.WriteMessage(typ, msg)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		go func() { // client → relay
			defer wg.Done()
			defer upstream.Close()
			for {
				typ, msg, err := down.ReadMessage()
				if err != nil {
					return
				}
				if id, ok := claimIn(msg); ok && refused.CompareAndSwap(0, 1) {
					ok, _ := json.Marshal([]any{"OK", id, false, "error: relay is shutting down, try again shortly"})
					mu.Lock()
					err = down.WriteMessage(websocket.TextMessage, ok)
					mu.Unlock()
					if err != nil {
						return
					}
					continue
				}
				if err := upstream.WriteMessage(typ, msg); err != nil {
					return
				}
			}
		}()
	}))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); wg.Wait() })
	return strings.Replace(srv.URL, "http://", "ws://", 1), &refused
}

// claimIn reports whether msg is an EVENT carrying a lease claim, and its id.
func claimIn(msg []byte) (string, bool) {
	var env []json.RawMessage
	if json.Unmarshal(msg, &env) != nil || len(env) != 2 || string(env[0]) != `"EVENT"` {
		return "", false
	}
	var evt nostr.Event
	if json.Unmarshal(env[1], &evt) != nil || evt.Kind != nip90.KindFeedback {
		return "", false
	}
	_, leased, err := lease.Parse(evt.Tags)
	return evt.ID, err == nil && leased && evt.Tags.GetFirst([]string{"status", string(nip90.StatusProcessing)}) != nil
}

// A claim the home relay answers with trouble of its own ("error: relay is shutting down", as
// a relay restarting mid-job does) is not a refusal: the worker tries it again once the relay
// can take it, and the free job it has in hand is run and delivered instead of dropped.
func TestClaimRetriedAfterRelayTrouble(t *testing.T) {
	const text = "claimed on the second try"
	_, relayURL := startRelay(t)
	proxied, refused := troubledPath(t, relayURL)
	w := startWorker(t, proxied)
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	input, _, release := heldPNG(t, png)
	release() // served at once
	c := testrelay.Dial(t, relayURL)
	job := post(t, c, nostr.GeneratePrivateKey(), nostr.Tags{{"i", input, "url"}})
	res := results(t, c, job.ID)[job.ID]
	if res.PubKey != w.PubKey() || strings.ToLower(strings.TrimSpace(res.Content)) != text {
		t.Fatalf("result %q from %s, want the worker %s", res.Content, res.PubKey, w.PubKey())
	}
	if n := refused.Load(); n != 1 {
		t.Fatalf("the proxy answered %d claims with trouble, want 1", n)
	}
	if n := w.Stats().Executed; n != 1 {
		t.Fatalf("executed %d times, want once", n)
	}
}
