package lnd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
)

// replayServer serves recorded lnd replies over TLS on 127.0.0.1: getinfo, and the invoice
// stream, whose connections the test scripts one by one. It stands in for lnd where the real
// one cannot be made to misbehave on cue (dropping a stream).
type replayServer struct {
	*httptest.Server
	conns chan url.Values // the query of each invoice stream connection
	// streams[i] is what connection i gets before it drops; past the end, connections hang
	// until the client goes away.
	streams [][]byte
}

func newReplayServer(t *testing.T, streams ...[]byte) *replayServer {
	t.Helper()
	getinfo, err := os.ReadFile(filepath.Join("testdata", "getinfo.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := &replayServer{conns: make(chan url.Values, 16), streams: streams}
	n := 0
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Grpc-Metadata-macaroon") != "0201" {
			http.Error(w, `{"code":2,"message":"expected 1 macaroon, got 0","details":[]}`, http.StatusInternalServerError)
			return
		}
		switch r.URL.Path {
		case "/v1/getinfo":
			w.Write(getinfo)
		case "/v1/invoices":
			w.Write([]byte(`{"invoices":[],"last_index_offset":"7","first_index_offset":"7"}`))
		case "/v1/invoices/subscribe":
			s.conns <- r.URL.Query()
			i := n
			n++
			if i < len(s.streams) {
				w.Write(s.streams[i])
				return // drop the stream
			}
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	// A stream canceled while it reconnects leaves a half-done handshake; not worth a log line.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// config writes the server's certificate and a macaroon to files, as lnd would have them.
func (s *replayServer) config(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{RESTURL: s.URL, MacaroonPath: filepath.Join(dir, "admin.macaroon"), TLSCertPath: filepath.Join(dir, "tls.cert")}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(cfg.TLSCertPath, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.MacaroonPath, []byte{0x02, 0x01}, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSubscribeReconnectsAndDropsRepeats(t *testing.T) {
	recorded, err := os.ReadFile(filepath.Join("testdata", "subscribe.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	// subscribe.jsonl: coffee settles (add 1, settle 1), then two invoices are added.
	settled := recorded[:bytes.IndexByte(recorded, '\n')+1]
	other := strings.NewReplacer(
		`"r_hash":"LNOvHnxYysmHjUy8GbdiClssYG9MCH157sL/nGkk7fM="`, `"r_hash":"3n6P0PPjP4ZgTL10FC2+ZfEyNIU9pJ7pbLdyF7fV+x0="`,
		`"settle_index":"1"`, `"settle_index":"2"`,
	).Replace(string(settled))
	// The second connection replays coffee (a repeat to drop), then another settlement.
	srv := newReplayServer(t, recorded, append(append([]byte{}, settled...), other...))
	b, err := New(t.Context(), srv.config(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.accounts[coffeeHash] = "coffee-account"

	events, err := b.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ev := receive(t, events)
	if ev.Account != "coffee-account" || ev.Notification.Type != nip47.NotificationPaymentReceived ||
		ev.Notification.Transaction.PaymentHash != coffeeHash || ev.Notification.Transaction.Preimage != coffeePreimage {
		t.Errorf("first event = %+v", ev)
	}
	ev = receive(t, events)
	if ev.Account != "" || ev.Notification.Transaction.PaymentHash != "de7e8fd0f3e33f86604cbd74142dbe65f13234853da49ee96cb77217b7d5fb1d" {
		t.Errorf("second event = %+v, want the other invoice, for account \"\"", ev)
	}

	// First from the newest invoice at Subscribe; after the drop, from the settlement seen.
	for i, want := range []url.Values{
		{"add_index": {"7"}},
		{"add_index": {"7"}, "settle_index": {"1"}},
		{"add_index": {"7"}, "settle_index": {"2"}},
	} {
		if got := <-srv.conns; got.Encode() != want.Encode() {
			t.Errorf("connection %d asked for %s, want %s", i, got.Encode(), want.Encode())
		}
	}

	b.Close()
	if _, ok := <-events; ok {
		t.Error("event after Close")
	}
	if _, err := b.Subscribe(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

func TestPaymentSentReachesEverySubscriber(t *testing.T) {
	srv := newReplayServer(t)
	b, err := New(t.Context(), srv.config(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	first, err := b.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // queued, not dropped, while nobody reads
		b.notify(wallet.BackendEvent{Account: string(rune('a' + i))})
	}
	for _, events := range []<-chan wallet.BackendEvent{first, second} {
		for i := range 3 {
			if ev := receive(t, events); ev.Account != string(rune('a'+i)) {
				t.Errorf("event %d: account %q", i, ev.Account)
			}
		}
	}
}

func TestNewChecksTheServer(t *testing.T) {
	srv := newReplayServer(t)
	good := srv.config(t)
	otherCert := filepath.Join(t.TempDir(), "other.cert")
	if err := os.WriteFile(otherCert, selfSigned(t), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongMac := filepath.Join(t.TempDir(), "x.macaroon")
	if err := os.WriteFile(wrongMac, []byte{0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr error // nil: any error
	}{
		{"another server's certificate", func(c *Config) { c.TLSCertPath = otherCert }, ErrCertMismatch},
		{"rejected macaroon", func(c *Config) { c.MacaroonPath = wrongMac }, ErrUnauthorized},
		{"no certificate file", func(c *Config) { c.TLSCertPath = filepath.Join(t.TempDir(), "none") }, os.ErrNotExist},
		{"no macaroon file", func(c *Config) { c.MacaroonPath = filepath.Join(t.TempDir(), "none") }, os.ErrNotExist},
		{"plain http", func(c *Config) { c.RESTURL = strings.Replace(c.RESTURL, "https", "http", 1) }, nil},
		{"macaroon file as certificate", func(c *Config) { c.TLSCertPath = c.MacaroonPath }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			b, err := New(t.Context(), cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("New: %v, want %v", err, tc.wantErr)
			}
		})
	}
	b, err := New(t.Context(), good)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// selfSigned makes a certificate like lnd's, for 127.0.0.1, as PEM. (Every httptest server
// uses the same built-in certificate, so another server's would not do.)
func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"lnd autogenerated cert"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func receive(t *testing.T, events <-chan wallet.BackendEvent) wallet.BackendEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("subscription closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return wallet.BackendEvent{}
}
