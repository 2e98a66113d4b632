package worker

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip89"
)

func TestFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/png":
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("\x89PNG\r\n\x1a\n...."))
		case "/sniff":
			w.Write([]byte("\x89PNG\r\n\x1a\n...."))
		case "/big":
			w.Header().Set("Content-Type", "image/png")
			w.Write(make([]byte, 2048))
		case "/redirect":
			http.Redirect(w, r, "/png", http.StatusFound)
		case "/slow":
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	open := NewFetcher(1024, 2*time.Second, true)
	strict := NewFetcher(1024, 2*time.Second, false)
	png := []string{"image/png"}
	tests := []struct {
		name string
		f    *Fetcher
		url  string
		want string // "" for success, else in the rejection
	}{
		{"png", open, srv.URL + "/png", ""},
		{"sniffed type", open, srv.URL + "/sniff", ""},
		{"redirect", open, srv.URL + "/redirect", ""},
		{"too big", open, srv.URL + "/big", "more than the 1024 bytes"},
		{"timeout", NewFetcher(1024, 200*time.Millisecond, true), srv.URL + "/slow", "timed out"},
		{"loopback refused", strict, srv.URL + "/png", "private, loopback, link-local or reserved"},
		{"name resolving to loopback refused", strict, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/png", "private, loopback, link-local or reserved"},
		{"private refused", strict, "http://10.255.255.1:9/x.png", "private, loopback, link-local or reserved"},
		{"link-local refused", strict, "http://169.254.169.254/latest/meta-data", "private, loopback, link-local or reserved"},
		{"ipv6 loopback refused", strict, "http://[::1]:9/x.png", "private, loopback, link-local or reserved"},
		{"nat64 of loopback refused", strict, "http://[64:ff9b::7f00:1]:9/x.png", "private, loopback, link-local or reserved"},
		{"6to4 refused", strict, "http://[2002:7f00:1::1]:9/x.png", "private, loopback, link-local or reserved"},
		{"ipv4-compatible refused", strict, "http://[::127.0.0.1]:9/x.png", "private, loopback, link-local or reserved"},
		{"ipv4-mapped loopback refused", strict, "http://[::ffff:127.0.0.1]:9/x.png", "private, loopback, link-local or reserved"},
		{"this network refused", strict, "http://0.0.0.0:9/x.png", "private, loopback, link-local or reserved"},
		{"benchmarking refused", strict, "http://198.18.0.1:9/x.png", "private, loopback, link-local or reserved"},
		{"class E refused", strict, "http://240.0.0.1:9/x.png", "private, loopback, link-local or reserved"},
		{"file scheme", open, "file:///etc/passwd", `scheme "file"`},
		{"data url", open, "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n")), ""},
		{"data url wrong type", open, "data:text/plain;base64,aGk=", "input is text/plain"},
		{"data url not base64", open, "data:image/png,raw", "must be base64"},
		{"data url bad base64", open, "data:image/png;base64,!!!", "not valid base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.f.Fetch(context.Background(), tc.url, png)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				return
			}
			var rej *nip01.Rejection
			if !errors.Is(err, ErrFetch) || !errors.As(err, &rej) || !strings.Contains(rej.Reason, tc.want) {
				t.Fatalf("fetch error %v, want a rejection mentioning %q", err, tc.want)
			}
		})
	}
}

func FuzzFetchDataURL(f *testing.F) {
	f.Add("data:image/png;base64,iVBORw0KGgo=")
	f.Add("data:;base64,")
	f.Add("data:image/jpeg;charset=x;base64,/9j/")
	fetch := NewFetcher(1<<16, time.Second, false)
	f.Fuzz(func(t *testing.T, u string) {
		if !strings.HasPrefix(u, "data:") {
			return
		}
		body, mt, err := fetch.Fetch(context.Background(), u, []string{"image/png", "image/jpeg"})
		if err != nil {
			if !errors.Is(err, ErrFetch) {
				t.Fatalf("error %v does not wrap ErrFetch", err)
			}
			return
		}
		if int64(len(body)) > fetch.MaxBytes || (mt != "image/png" && mt != "image/jpeg") {
			t.Fatalf("accepted %d bytes of %s", len(body), mt)
		}
	})
}

func TestLoadManifests(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) { os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644) }
	for name, d := range map[string]string{"empty folder": dir, "missing folder": filepath.Join(dir, "none")} {
		want := "no models in " + d + ": run scripts/fetch-models (or set --models)"
		if _, err := LoadManifests(d); !errors.Is(err, ErrNoModels) || err.Error() != want {
			t.Fatalf("%s: %v, want %q", name, err, want)
		}
	}
	write("m.onnx", "x")
	tests := []struct{ name, body, want string }{
		{"ok", `{"name":"m","task":"tensor","kind":5800,"files":{"model":"m.onnx"},"price":{"base_msat":1}}`, ""},
		{"unknown field", `{"name":"m","task":"tensor","kind":5800,"files":{"model":"m.onnx"},"color":"red"}`, "unknown field"},
		{"bad task", `{"name":"m","task":"dance","kind":5800,"files":{"model":"m.onnx"}}`, "task"},
		{"bad kind", `{"name":"m","task":"tensor","kind":1,"files":{"model":"m.onnx"}}`, "kind 1"},
		{"missing file", `{"name":"m","task":"tensor","kind":5800,"files":{"model":"gone.onnx"}}`, "no models in " + dir + ": a.json names gone.onnx (model), which is missing: run scripts/fetch-models (or set --models)"},
		{"path escape", `{"name":"m","task":"tensor","kind":5800,"files":{"model":"../m.onnx"}}`, "plain file name"},
		{"negative price", `{"name":"m","task":"tensor","kind":5800,"files":{"model":"m.onnx"},"price":{"base_msat":-1}}`, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			write("a.json", tc.body)
			ms, err := LoadManifests(dir)
			if tc.want == "" {
				if err != nil || len(ms) != 1 || ms[0].Price.BaseMsat != 1 {
					t.Fatalf("%v %+v", err, ms)
				}
				return
			}
			if !(errors.Is(err, ErrManifest) || errors.Is(err, ErrNoModels)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// The NIP-89 announcement lists the kinds, the models with their sha256, the provider and
// the relays.
func TestAnnouncement(t *testing.T) {
	cfg := testConfig(t, "ws://127.0.0.1:1")
	w, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	evt := w.announcement
	if ok, _ := evt.CheckSignature(); !ok || evt.PubKey != w.PubKey() {
		t.Fatal("announcement not signed by the worker")
	}
	h, err := nip89.ParseHandlerInfo(&evt)
	if err != nil {
		t.Fatal(err)
	}
	wi := h.Metadata.Worker
	if len(h.Kinds) != 2 || wi == nil || wi.Provider != "CPUExecutionProvider" || wi.Relays[0] != "ws://127.0.0.1:1" || wi.Payment != "free" {
		t.Fatalf("announcement %+v %+v", h, wi)
	}
	for _, m := range wi.Models {
		if len(m.SHA256) == 0 || m.Price.BaseMsat != 0 {
			t.Fatalf("model %+v: no sha256 or a price without a wallet", m)
		}
		for _, sum := range m.SHA256 {
			if !nostr.IsValid32ByteHex(sum) {
				t.Fatalf("model %s sha256 %q", m.Name, sum)
			}
		}
	}
}
