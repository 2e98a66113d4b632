package demo

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe to read while another goroutine writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// With Keep, the demo says where the market page is and which wallet connection to paste into
// it, then waits for Ctrl-C (its context ending) before it goes on to stop everything.
func TestKeepWaitsForCtrlC(t *testing.T) {
	out := &lockedBuffer{}
	d := &run{o: Options{Out: out, Keep: true}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	returned := make(chan struct{})
	uri := "nostr+walletconnect://abc?relay=ws%3A%2F%2F127.0.0.1%3A7447&secret=def"
	go func() { defer close(returned); d.keep(ctx, "http://127.0.0.1:7447/", uri) }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C") { // its last line, then it waits
		if time.Now().After(deadline) {
			t.Fatalf("keep never said Ctrl-C stops it:\n%s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-returned:
		t.Fatal("keep returned before its context ended")
	default:
	}
	cancel()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("keep did not return once its context ended")
	}
	for _, want := range []string{"market page: http://127.0.0.1:7447/", uri, "throwaway"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("keep's output lacks %q:\n%s", want, out.String())
		}
	}
}
