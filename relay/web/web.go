// Package web is the market page a relay serves to browsers at "/": a live job board, the
// workers, small charts of the market's last hour and a form to post and pay for a job. The
// page is static HTML, CSS and JavaScript embedded in the binary; it talks to the relay only over
// the relay's own websocket and HTTP API (same origin), and to the customer's wallet only over
// the wallet's relay. Nothing is fetched from anywhere else, so a relay on a LAN with no
// internet serves a working page.
//
// static/nostr.js, the Nostr library the form signs and encrypts with, is a build output of
// scripts/web-bundle (npm packages pinned in a committed package-lock.json), not a committed file: a
// binary built without it serves the page with the form disabled and a note saying so.
package web

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed index.html static
var files embed.FS

// BundleFile is the bundle's path under static/.
const BundleFile = "nostr.js"

// Prefix is the path the page's assets are served under.
const Prefix = "/web/static/"

// csp lets the page load only its own assets and connect to websockets (the relay's own and the
// wallet relay named in a pasted NWC URI) and its own origin's API.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Page serves the market page and its assets.
type Page struct {
	index  []byte // rendered once: the page with its title
	assets http.Handler
	bundle bool
}

// New renders the page with title (the relay's --web-title, or its name).
func New(title string) (*Page, error) {
	tmpl, err := template.ParseFS(files, "index.html")
	if err != nil {
		return nil, err
	}
	_, statErr := fs.Stat(files, "static/"+BundleFile)
	p := &Page{bundle: statErr == nil}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, struct {
		Title  string
		Bundle bool
	}{title, p.bundle}); err != nil {
		return nil, err
	}
	p.index = buf.Bytes()
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	p.assets = http.StripPrefix(Prefix, http.FileServerFS(static))
	return p, nil
}

// HasBundle reports whether the binary was built with static/nostr.js (the form needs it).
func (p *Page) HasBundle() bool { return p.bundle }

// ServeIndex writes the page.
func (p *Page) ServeIndex(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	secure(h)
	_, _ = w.Write(p.index)
}

// ServeAsset serves a file under Prefix.
func (p *Page) ServeAsset(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache") // small files; a new binary's page must not mix with an old one's
	secure(h)
	p.assets.ServeHTTP(w, r)
}

func secure(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// WantsHTML reports whether r is a browser asking for a page: an Accept header that names
// text/html, and not a websocket upgrade or a NIP-11 request.
func WantsHTML(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" {
		return false
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/html") && !strings.Contains(accept, "application/nostr+json")
}
