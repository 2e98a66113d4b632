package relay

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// TestMarketPage: on the relay's one port a browser gets the market page, curl the plain-text
// note, a Nostr client NIP-11; --web=false turns the page off and leaves the rest alone.
func TestMarketPage(t *testing.T) {
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
	for _, tc := range []struct {
		name      string
		web       bool
		title     string
		wantTitle string
	}{
		{"default title is the name", true, "", "our market"},
		{"--web-title", true, "Market of the valley", "Market of the valley"},
		{"--web=false", false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Name, cfg.Web, cfg.WebTitle = "our market", tc.web, tc.title
			tr := startRelay(t, cfg)

			res, body := get(t, tr.http+"/", browser)
			if tc.web {
				if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
					t.Fatalf("browser got %q", ct)
				}
				if !strings.Contains(body, `<h1 id="market-title">`+tc.wantTitle+`</h1>`) {
					t.Errorf("the page's title is not %q:\n%.400s", tc.wantTitle, body)
				}
			} else if strings.Contains(body, "<html") {
				t.Errorf("--web=false still serves the page")
			}
			res, _ = get(t, tr.http+"/web/static/app.js", nil)
			if (res.StatusCode == http.StatusOK) != tc.web {
				t.Errorf("app.js: %d with the page %v", res.StatusCode, tc.web)
			}

			_, body = get(t, tr.http+"/", map[string]string{"Accept": "*/*"})
			if !strings.Contains(body, "a sparecycles relay") {
				t.Errorf("curl got %.200q", body)
			}
			var info InfoDocument
			getJSON(t, tr.http, map[string]string{"Accept": "application/nostr+json"}, &info)
			if info.Name != "our market" {
				t.Errorf("NIP-11 name %q", info.Name)
			}
			tr.connect(t) // and the websocket on the same port
		})
	}
}
