package nip90

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	nostr "github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"
	"github.com/nbd-wtf/go-nostr/nip44"
)

// Keys of the private-job tests: a customer, its provider, and another provider.
var (
	privCustomerSK = strings.Repeat("0", 63) + "1"
	privProviderSK = strings.Repeat("0", 63) + "2"
	otherSK        = strings.Repeat("0", 63) + "3"
)

func pub(t testing.TB, sk string) string {
	t.Helper()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func cipher(t testing.TB, sk, peer string) *Cipher {
	t.Helper()
	c, err := NewCipher(sk, peer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// privateRequest is a request with inputs, params and clear tags, to one provider.
func privateRequest(t testing.TB) JobRequest {
	return JobRequest{
		Kind: 5000, CreatedAt: createdAt, Output: "text/plain", BidMsat: 5000, Relays: []string{"wss://relay.example"},
		Inputs:    []Input{{Value: "data:image/png;base64,AAAA", Type: InputURL}, {Value: "https://example.com/secret.png", Type: InputURL}},
		Params:    []Param{{Name: "lang", Values: []string{"en"}}},
		Providers: []string{pub(t, privProviderSK)}, Expiration: createdAt + 600,
	}
}

func TestEncryptRequestRoundTrip(t *testing.T) {
	req := privateRequest(t)
	customer := pub(t, privCustomerSK)
	evt, err := EncryptRequest(&req, cipher(t, privCustomerSK, req.Providers[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := evt.Sign(privCustomerSK); err != nil {
		t.Fatal(err)
	}
	// nothing of the inputs or params in the clear; the rest of the tags is
	raw := evt.String()
	for _, secret := range []string{"secret.png", "data:image", "lang"} {
		if strings.Contains(raw, secret) {
			t.Errorf("%q is in the clear: %s", secret, raw)
		}
	}
	for _, tag := range []string{"p", "bid", "relays", "expiration", "output"} {
		if evt.Tags.Find(tag) == nil {
			t.Errorf("no %q tag in the clear: %v", tag, evt.Tags)
		}
	}
	if !IsEncrypted(&evt) {
		t.Error("no encrypted tag")
	}
	// the same request encrypts to the same event; another time, to another
	again, _ := EncryptRequest(&req, cipher(t, privCustomerSK, req.Providers[0]))
	if again.Content != evt.Content {
		t.Error("the same request encrypted to another content")
	}
	later := req
	later.CreatedAt++
	if other, _ := EncryptRequest(&later, cipher(t, privCustomerSK, req.Providers[0])); other.Content == evt.Content {
		t.Error("another created_at encrypted to the same content")
	}

	got, scheme, err := DecryptRequest(&evt, cipher(t, privProviderSK, customer))
	if err != nil {
		t.Fatal(err)
	}
	want := req
	want.ID, want.PubKey, want.Encrypted, want.Content = evt.ID, customer, true, evt.Content
	if scheme != NIP44 || !reflect.DeepEqual(got, &want) {
		t.Errorf("decrypted %s\n%+v\nwant\n%+v", scheme, got, &want)
	}

	// another provider cannot read it
	if _, _, err := DecryptRequest(&evt, cipher(t, otherSK, customer)); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("another provider's key: %v, want ErrUndecryptable", err)
	}
}

func TestEncryptRequestRefuses(t *testing.T) {
	c := cipher(t, privCustomerSK, pub(t, privProviderSK))
	none := privateRequest(t)
	none.Providers = nil
	two := privateRequest(t)
	two.Providers = append(two.Providers, pub(t, otherSK))
	big := privateRequest(t)
	big.Inputs = []Input{{Value: "data:image/png;base64," + strings.Repeat("A", 70_000), Type: InputURL}}
	for name, r := range map[string]JobRequest{"no provider": none, "two providers": two, "over NIP-44's limit": big} {
		if _, err := EncryptRequest(&r, c); !errors.Is(err, ErrBadPrivateTags) {
			t.Errorf("%s: %v, want ErrBadPrivateTags", name, err)
		}
	}
}

// encryptedEvent builds an encrypted request whose content is plain encrypted with NIP-44 (or
// NIP-04) from the customer to the provider.
func encryptedEvent(t *testing.T, plain string, scheme Scheme, clear ...nostr.Tag) nostr.Event {
	t.Helper()
	content, err := cipher(t, privCustomerSK, pub(t, privProviderSK)).Encrypt(scheme, plain)
	if err != nil {
		t.Fatal(err)
	}
	tags := append(nostr.Tags{{"p", pub(t, privProviderSK)}, {"encrypted"}}, clear...)
	return nostr.Event{ID: requestID, PubKey: pub(t, privCustomerSK), CreatedAt: createdAt, Kind: 5000, Tags: tags, Content: content}
}

func TestDecryptRequest(t *testing.T) {
	provider := cipher(t, privProviderSK, pub(t, privCustomerSK))
	okTags := `[["i","https://example.com/a.png","url"],["param","lang","en"],["bid","1"],["output","text/plain"]]`
	tests := []struct {
		name    string
		evt     nostr.Event
		inputs  int
		output  string
		scheme  Scheme
		wantErr error
	}{
		{"nip44", encryptedEvent(t, okTags, NIP44), 1, "text/plain", NIP44, nil},
		{"nip04, as 90.md writes it", encryptedEvent(t, okTags, NIP04), 1, "text/plain", NIP04, nil},
		{"clear output wins", encryptedEvent(t, okTags, NIP44, nostr.Tag{"output", "text/markdown"}), 1, "text/markdown", NIP44, nil},
		{"empty array", encryptedEvent(t, `[]`, NIP44), 0, "", NIP44, nil},
		{"not encrypted", request(5000, "", nostr.Tag{"p", providerPK}), 0, "", 0, ErrBadPrivateTags},
		{"i in the clear", encryptedEvent(t, okTags, NIP44, nostr.Tag{"i", "x", "text"}), 0, "", 0, ErrBadPrivateTags},
		{"param in the clear", encryptedEvent(t, okTags, NIP44, nostr.Tag{"param", "a", "b"}), 0, "", 0, ErrBadPrivateTags},
		{"not JSON", encryptedEvent(t, `hello`, NIP44), 0, "", 0, ErrBadPrivateTags},
		{"an object", encryptedEvent(t, `{"i":1}`, NIP44), 0, "", 0, ErrBadPrivateTags},
		{"numbers in a tag", encryptedEvent(t, `[["i",1]]`, NIP44), 0, "", 0, ErrBadPrivateTags},
		{"trailing data", encryptedEvent(t, `[] []`, NIP44), 0, "", 0, ErrBadPrivateTags},
		{"too many tags", encryptedEvent(t, "["+strings.Repeat(`["t","x"],`, MaxPrivateTags)+`["t","x"]]`, NIP44), 0, "", 0, ErrBadPrivateTags},
		{"bad input", encryptedEvent(t, `[["i","ftp://x","url"]]`, NIP44), 0, "", 0, ErrBadTag},
		{"garbage content", func() nostr.Event {
			e := encryptedEvent(t, okTags, NIP44)
			e.Content = "AAAA"
			return e
		}(), 0, "", 0, ErrUndecryptable},
		{"nip04 with a short iv", func() nostr.Event {
			e := encryptedEvent(t, okTags, NIP44)
			e.Content = "AAAAAAAAAAAAAAAAAAAAAA==?iv=AAAA"
			return e
		}(), 0, "", 0, ErrUndecryptable},
		{"nip04 not whole blocks", func() nostr.Event {
			e := encryptedEvent(t, okTags, NIP44)
			e.Content = "AAAA?iv=AAAAAAAAAAAAAAAAAAAAAA=="
			return e
		}(), 0, "", 0, ErrUndecryptable},
		{"over the size limit", func() nostr.Event {
			e := encryptedEvent(t, okTags, NIP44)
			e.Content = strings.Repeat("A", MaxEncryptedContent+4)
			return e
		}(), 0, "", 0, ErrUndecryptable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, scheme, err := DecryptRequest(&tc.evt, provider)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(req.Inputs) != tc.inputs || req.Output != tc.output || scheme != tc.scheme || req.BidMsat != 0 {
				t.Errorf("got %d inputs, output %q, scheme %s, bid %d", len(req.Inputs), req.Output, scheme, req.BidMsat)
			}
		})
	}
}

func TestConcealReveal(t *testing.T) {
	customer, provider := pub(t, privCustomerSK), pub(t, privProviderSK)
	toCustomer := cipher(t, privProviderSK, customer)
	fromProvider := cipher(t, privCustomerSK, provider)
	for _, scheme := range []Scheme{NIP44, NIP04} {
		t.Run(scheme.String(), func(t *testing.T) {
			// error feedback: the info goes into the content
			fb := JobFeedback{JobID: requestID, Customer: customer, Status: StatusError, Info: "cannot fetch https://example.com/secret.png"}
			evt := fb.Event()
			if err := ConcealResponse(&evt, toCustomer, scheme); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(evt.String(), "secret") || !IsEncrypted(&evt) || SchemeOf(evt.Content) != scheme {
				t.Fatalf("concealed feedback: %s", evt.String())
			}
			if err := ConcealResponse(&evt, toCustomer, scheme); err != nil || !strings.Contains(evt.String(), `["encrypted"]]`) {
				t.Fatal("concealing twice changed the event")
			}
			got, err := ParseJobFeedback(&evt)
			if err != nil {
				t.Fatal(err)
			}
			if err := RevealFeedback(got, fromProvider); err != nil {
				t.Fatal(err)
			}
			if got.Info != fb.Info || got.Content != "" || got.Status != StatusError {
				t.Errorf("revealed %+v", got)
			}
			clear, err := RevealResponse(&evt, fromProvider)
			if err != nil || IsEncrypted(clear) || clear.Content != "" || clear.Tags.Find("status")[2] != fb.Info {
				t.Errorf("revealed event %v, %v", clear, err)
			}
			// partial feedback keeps its content as content
			part := JobFeedback{JobID: requestID, Customer: customer, Status: StatusPartial, Content: "page one"}
			evt = part.Event()
			_ = ConcealResponse(&evt, toCustomer, scheme)
			got, _ = ParseJobFeedback(&evt)
			if err := RevealFeedback(got, fromProvider); err != nil || got.Content != "page one" || got.Info != "" {
				t.Errorf("revealed partial %+v, %v", got, err)
			}
			// processing: nothing to encrypt, marked all the same
			proc := JobFeedback{JobID: requestID, Customer: customer, Status: StatusProcessing}
			evt = proc.Event()
			_ = ConcealResponse(&evt, toCustomer, scheme)
			if evt.Content != "" || !IsEncrypted(&evt) {
				t.Errorf("processing: %s", evt.String())
			}
			// a result: content encrypted, no inputs copied
			res := JobResult{Kind: 6000, JobID: requestID, Customer: customer, Content: "the text", Inputs: []Input{{Value: "https://example.com/secret.png", Type: InputURL}}}
			evt = res.Event()
			if err := ConcealResponse(&evt, toCustomer, scheme); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(evt.String(), "secret") || strings.Contains(evt.String(), "the text") {
				t.Fatalf("concealed result: %s", evt.String())
			}
			r, err := ParseJobResult(&evt)
			if err != nil {
				t.Fatal(err)
			}
			if err := RevealResult(r, fromProvider); err != nil || r.Content != "the text" {
				t.Errorf("revealed result %q, %v", r.Content, err)
			}
			// another key cannot read it
			r, _ = ParseJobResult(&evt)
			if err := RevealResult(r, cipher(t, otherSK, provider)); !errors.Is(err, ErrUndecryptable) {
				t.Errorf("another key: %v", err)
			}
		})
	}
	req := nostr.Event{Kind: 5000}
	if err := ConcealResponse(&req, toCustomer, NIP44); !errors.Is(err, ErrWrongKind) {
		t.Errorf("a request: %v", err)
	}
}

// TestNIP04Interop decrypts a request encrypted by go-nostr's nip04 directly, as an older
// client would send it.
func TestNIP04Interop(t *testing.T) {
	shared, err := nip04.ComputeSharedSecret(pub(t, privProviderSK), privCustomerSK)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(nostr.Tags{{"i", "what is the capital of France?", "text"}, {"param", "model", "LLaMA-2"}})
	content, err := nip04.Encrypt(string(plain), shared)
	if err != nil {
		t.Fatal(err)
	}
	evt := nostr.Event{ID: requestID, PubKey: pub(t, privCustomerSK), Kind: 5050, Content: content, Tags: nostr.Tags{{"p", pub(t, privProviderSK)}, {"encrypted"}}}
	req, scheme, err := DecryptRequest(&evt, cipher(t, privProviderSK, pub(t, privCustomerSK)))
	if err != nil {
		t.Fatal(err)
	}
	if scheme != NIP04 || req.Inputs[0].Value != "what is the capital of France?" || req.Params[0].Values[0] != "LLaMA-2" {
		t.Errorf("got %s %+v", scheme, req)
	}
	// and a NIP-44 one made with go-nostr's nip44 directly
	ck, _ := nip44.GenerateConversationKey(pub(t, privProviderSK), privCustomerSK)
	evt.Content, _ = nip44.Encrypt(string(plain), ck)
	if _, scheme, err := DecryptRequest(&evt, cipher(t, privProviderSK, pub(t, privCustomerSK))); err != nil || scheme != NIP44 {
		t.Errorf("nip44: %s, %v", scheme, err)
	}
}

// FuzzDecryptRequest feeds the provider a request whose content is the fuzzed plaintext,
// encrypted to it (so the parser behind decryption is reached), and one whose content is the
// fuzzed bytes as they are. Properties: no panic; a request read is one EncryptRequest writes
// back and DecryptRequest reads the same.
func FuzzDecryptRequest(f *testing.F) {
	f.Add(`[["i","https://example.com/a.png","url"],["param","lang","en"]]`, false)
	f.Add(`[["i","x","text"],["output","text/plain"],["bid","9"]]`, false)
	f.Add(`[]`, false)
	f.Add(`[["i"]]`, false)
	f.Add(`AAAAAAAAAAAAAAAAAAAAAA==?iv=AAAAAAAAAAAAAAAAAAAAAA==`, true)
	f.Add(`AAAA?iv=AAAA`, true)
	f.Add(`Ag`+strings.Repeat("A", 200), true)
	customer, provider := pub(f, privCustomerSK), pub(f, privProviderSK)
	toProvider := cipher(f, privCustomerSK, provider)
	providerSide := cipher(f, privProviderSK, customer)
	f.Fuzz(func(t *testing.T, s string, raw bool) {
		content := s
		if !raw {
			var err error
			if content, err = toProvider.Encrypt(NIP44, s); err != nil {
				t.Skip("not encryptable")
			}
		}
		evt := nostr.Event{ID: requestID, PubKey: customer, CreatedAt: createdAt, Kind: 5000, Content: content,
			Tags: nostr.Tags{{"p", provider}, {"encrypted"}}}
		req, _, err := DecryptRequest(&evt, providerSide)
		if err != nil {
			return
		}
		again, err := EncryptRequest(req, toProvider)
		if err != nil {
			if errors.Is(err, ErrBadPrivateTags) {
				return // grew over NIP-44's limit when rewritten in full
			}
			t.Fatalf("rewrite: %v", err)
		}
		again.ID, again.PubKey = evt.ID, evt.PubKey
		back, _, err := DecryptRequest(&again, providerSide)
		if err != nil {
			t.Fatalf("reread: %v", err)
		}
		back.Content = req.Content
		if !reflect.DeepEqual(req, back) {
			t.Fatalf("reread\n%+v\nwant\n%+v", back, req)
		}
	})
}
