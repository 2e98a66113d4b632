package nip47

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const (
	specWallet = "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4"
	specSecret = "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c"
	// specURI is the spec's example connection string.
	specURI = "nostr+walletconnect://" + specWallet + "?relay=wss%3A%2F%2Frelay.damus.io&secret=" + specSecret
)

var uriTests = []struct {
	name    string
	in      string
	want    URI
	wantErr error
}{
	{name: "spec example", in: specURI,
		want: URI{WalletPubKey: specWallet, Relays: []string{"wss://relay.damus.io"}, Secret: specSecret}},
	{name: "relays, lud16 and unknown params",
		in:   "nostr+walletconnect://" + specWallet + "?relay=ws://127.0.0.1:7777&relay=wss%3A%2F%2Fr.example%2Fnwc&secret=" + specSecret + "&lud16=me%40example.com&budget=5",
		want: URI{WalletPubKey: specWallet, Relays: []string{"ws://127.0.0.1:7777", "wss://r.example/nwc"}, Secret: specSecret, LUD16: "me@example.com"}},
	{name: "early form without slashes", in: "nostr+walletconnect:" + specWallet + "?relay=wss://r.example&secret=" + specSecret,
		want: URI{WalletPubKey: specWallet, Relays: []string{"wss://r.example"}, Secret: specSecret}},
	{name: "upper case scheme and hex", in: "NOSTR+WALLETCONNECT://" + strings.ToUpper(specWallet) + "/?relay=wss://r.example&secret=" + strings.ToUpper(specSecret) + "#x",
		want: URI{WalletPubKey: specWallet, Relays: []string{"wss://r.example"}, Secret: specSecret}},
	{name: "surrounding space", in: "  " + specURI + "\n",
		want: URI{WalletPubKey: specWallet, Relays: []string{"wss://relay.damus.io"}, Secret: specSecret}},

	{name: "other scheme", in: "nostr+walletconnect2://" + specWallet + "?relay=wss://r.example&secret=" + specSecret, wantErr: ErrBadScheme},
	{name: "https", in: "https://" + specWallet, wantErr: ErrBadScheme},
	{name: "empty", in: "", wantErr: ErrBadScheme},
	{name: "short pubkey", in: "nostr+walletconnect://b889ff?relay=wss://r.example&secret=" + specSecret, wantErr: ErrBadPubKey},
	{name: "pubkey not hex", in: "nostr+walletconnect://" + strings.Repeat("g", 64) + "?relay=wss://r.example&secret=" + specSecret, wantErr: ErrBadPubKey},
	{name: "pubkey off the curve", in: "nostr+walletconnect://" + strings.Repeat("f", 64) + "?relay=wss://r.example&secret=" + specSecret, wantErr: ErrBadPubKey},
	{name: "pubkey with a path", in: "nostr+walletconnect://" + specWallet + "/x?relay=wss://r.example&secret=" + specSecret, wantErr: ErrBadPubKey},
	{name: "bad escape", in: "nostr+walletconnect://" + specWallet + "?relay=%zz&secret=" + specSecret, wantErr: ErrBadURI},
	{name: "no relay", in: "nostr+walletconnect://" + specWallet + "?secret=" + specSecret, wantErr: ErrNoRelay},
	{name: "http relay", in: "nostr+walletconnect://" + specWallet + "?relay=https://r.example&secret=" + specSecret, wantErr: ErrBadRelay},
	{name: "relay without host", in: "nostr+walletconnect://" + specWallet + "?relay=wss://&secret=" + specSecret, wantErr: ErrBadRelay},
	{name: "one bad relay of two", in: "nostr+walletconnect://" + specWallet + "?relay=wss://r.example&relay=r2.example&secret=" + specSecret, wantErr: ErrBadRelay},
	{name: "no secret", in: "nostr+walletconnect://" + specWallet + "?relay=wss://r.example", wantErr: ErrNoSecret},
	{name: "short secret", in: "nostr+walletconnect://" + specWallet + "?relay=wss://r.example&secret=" + specSecret[:63], wantErr: ErrBadSecret},
	{name: "zero secret", in: "nostr+walletconnect://" + specWallet + "?relay=wss://r.example&secret=" + strings.Repeat("0", 64), wantErr: ErrBadSecret},
	{name: "secret past the curve order", in: "nostr+walletconnect://" + specWallet + "?relay=wss://r.example&secret=" + strings.Repeat("f", 64), wantErr: ErrBadSecret},
	{name: "two secrets", in: "nostr+walletconnect://" + specWallet + "?relay=wss://r.example&secret=" + specSecret + "&secret=" + specSecret, wantErr: ErrBadSecret},
}

func TestParseURI(t *testing.T) {
	for _, tc := range uriTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURI(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if strings.Contains(strings.ToLower(err.Error()), specSecret) {
					t.Errorf("error %q quotes the secret", err)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestURIEncode(t *testing.T) {
	u, err := ParseURI(specURI)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Encode(); got != specURI {
		t.Errorf("Encode() = %q, want the spec's %q", got, specURI)
	}
	if got, want := u.String(), "nostr+walletconnect://"+specWallet+"?relay=wss%3A%2F%2Frelay.damus.io&secret=[redacted]"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := u.ClientPubKey(), u.Secret.PubKey(); got == "" || got != want {
		t.Errorf("ClientPubKey() = %q, want %q", got, want)
	}
	if (URI{Secret: "nope"}).ClientPubKey() != "" {
		t.Error("an invalid secret has a pubkey")
	}
}

func TestSecretRedacted(t *testing.T) {
	u, err := ParseURI(specURI)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(struct {
		S Secret
		U URI
	}{u.Secret, u})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprint(u.Secret), fmt.Sprintf("%s %q %x %#v %+v", u.Secret, u.Secret, u.Secret, u.Secret, u.Secret),
		fmt.Sprint(u), fmt.Sprintf("%+v %#v %s", u, u, &u), string(js),
	} {
		if strings.Contains(out, specSecret) {
			t.Errorf("secret printed: %s", out)
		}
	}
	if u.Secret.Hex() != specSecret {
		t.Errorf("Hex() = %q", u.Secret.Hex())
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if validKey(a.Hex()) != "" || a == b || a.PubKey() == "" {
		t.Fatalf("NewSecret gave invalid or repeated keys")
	}
}

func FuzzParseURI(f *testing.F) {
	for _, tc := range uriTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return // rejecting is fine; panicking is not
		}
		again, err := ParseURI(u.Encode())
		if err != nil || !reflect.DeepEqual(again, u) {
			t.Fatalf("round trip changed the URI (err=%v): %#v → %#v", err, u, again)
		}
		if strings.Contains(u.String(), u.Secret.Hex()) {
			t.Fatalf("String() shows the secret")
		}
	})
}
