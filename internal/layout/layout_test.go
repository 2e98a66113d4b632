package layout

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sparecycles/sparecycles"

var components = []string{"relay", "worker", "client", "wallet"}

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, imp := range p.Imports {
			if why := forbidden(rel, imp); why != "" {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
			}
		}
	}
}

// forbidden returns why package rel (relative to the module) may not import imp, or "".
func forbidden(rel, imp string) string {
	ours, isOurs := strings.CutPrefix(imp, module+"/")
	switch {
	case strings.HasPrefix(rel, "nips/"):
		// golang.org/x/crypto is the Go project's own crypto, which go-nostr's NIP-44 already
		// builds on (nips/escrow seals with its XChaCha20-Poly1305 and HKDF)
		if isOurs && !strings.HasPrefix(ours, "nips/") {
			return "nips/ imports only the standard library, go-nostr, golang.org/x/crypto and nips/"
		}
		if !isOurs && strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") &&
			!strings.HasPrefix(imp, "github.com/nbd-wtf/go-nostr") && !strings.HasPrefix(imp, "golang.org/x/crypto/") {
			return "nips/ imports only the standard library, go-nostr, golang.org/x/crypto and nips/"
		}
	case strings.HasPrefix(rel, "internal/"):
		if isOurs && component(ours) != "" {
			return "internal/ never imports a component"
		}
	default:
		if c := component(rel); c != "" && isOurs {
			if oc := component(ours); oc != "" && oc != c {
				return "components never import each other"
			}
		}
	}
	return ""
}

func component(rel string) string {
	first := strings.SplitN(rel, "/", 2)[0]
	for _, c := range components {
		if first == c {
			return c
		}
	}
	return ""
}

func TestForbidden(t *testing.T) {
	tests := []struct {
		rel, imp string
		bad      bool
	}{
		{"nips/nip90", "github.com/nbd-wtf/go-nostr", false},
		{"nips/nip90", "fmt", false},
		{"nips/nip90", module + "/nips/nip01", false},
		{"nips/nip90", module + "/relay", true},
		{"nips/nip90", "github.com/fiatjaf/khatru", true},
		{"nips/escrow", "golang.org/x/crypto/chacha20poly1305", false},
		{"nips/escrow", "golang.org/x/net/websocket", true},
		{"internal/testrelay", "github.com/fiatjaf/khatru", false},
		{"internal/testrelay", module + "/relay", true},
		{"relay", module + "/worker", true},
		{"relay/cmd/relay", module + "/relay", false},
		{"relay", module + "/internal/envflag", false},
	}
	for _, tc := range tests {
		if got := forbidden(tc.rel, tc.imp) != ""; got != tc.bad {
			t.Errorf("forbidden(%s, %s) = %v, want %v", tc.rel, tc.imp, got, tc.bad)
		}
	}
}
