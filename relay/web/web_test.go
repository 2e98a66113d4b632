package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestWantsHTML(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    bool
	}{
		{"browser", map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, true},
		{"curl", map[string]string{"Accept": "*/*"}, false},
		{"no accept", nil, false},
		{"nip-11", map[string]string{"Accept": "application/nostr+json"}, false},
		{"nip-11 and html", map[string]string{"Accept": "application/nostr+json, text/html"}, false},
		{"websocket", map[string]string{"Accept": "text/html", "Upgrade": "websocket"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := WantsHTML(r); got != tc.want {
				t.Errorf("WantsHTML = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestNoExternalReferences: a self-hosted relay's page must work offline on a LAN, so nothing
// the page ships names another origin: no absolute src/href, no CSS url() but data:, no
// http(s) URL in the scripts (the SVG namespace is a name, not a request). The bundle is
// npm's code and is held to the same rule by the browser test (CSP default-src 'self').
func TestNoExternalReferences(t *testing.T) {
	absolute := regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["']?\s*(https?:)?//`)
	cssURL := regexp.MustCompile(`(?i)url\(\s*["']?([^"')]*)`)
	jsURL := regexp.MustCompile(`(?i)https?://[^\s"'` + "`" + `)]+`)
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "static/"+BundleFile {
			return err
		}
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		s := string(b)
		if m := absolute.FindString(s); m != "" {
			t.Errorf("%s names another origin: %q", path, m)
		}
		if !strings.HasSuffix(path, ".js") { // CSS, and style in the HTML
			for _, m := range cssURL.FindAllStringSubmatch(s, -1) {
				if !strings.HasPrefix(m[1], "data:") {
					t.Errorf("%s loads %q", path, m[1])
				}
			}
		}
		if strings.HasSuffix(path, ".js") {
			for _, m := range jsURL.FindAllString(s, -1) {
				if m != "http://www.w3.org/2000/svg" {
					t.Errorf("%s names %q", path, m)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPage(t *testing.T) {
	p, err := New(`our <market> & co`)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.ServeIndex(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `<h1 id="market-title">our &lt;market&gt; &amp; co</h1>`) {
		t.Errorf("the title is not in the page, escaped:\n%.600s", body)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if got := strings.Contains(body, `src="/web/static/nostr.js"`); got != p.HasBundle() {
		t.Errorf("page loads the bundle: %v, bundle built: %v", got, p.HasBundle())
	}
	for _, asset := range []string{"app.js", "post.js", "style.css"} {
		rec := httptest.NewRecorder()
		p.ServeAsset(rec, httptest.NewRequest("GET", Prefix+asset, nil))
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("%s: %d, %d bytes", asset, rec.Code, rec.Body.Len())
		}
		if !strings.Contains(body, Prefix+asset) {
			t.Errorf("the page does not load %s", asset)
		}
	}
	rec = httptest.NewRecorder()
	p.ServeAsset(rec, httptest.NewRequest("GET", Prefix+"../index.html", nil))
	if rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), "<html") {
		t.Errorf("an asset path escapes static/")
	}
}
