// Package console is Aurum's web console: plain HTML, CSS and vanilla ES
// modules embedded in the binary (no build step, no Node toolchain, nothing
// fetched from outside), served by `aurum serve` at / on its HTTP port in
// front of the API.
//
// The console has no server side of its own: its JavaScript calls only the
// public JSON API (/v1/...) with the session cookie, so every call passes
// the API's one route table and its roles (static/assets/routes.js lists
// every route the console calls; TestConsoleRoutesInAPI checks each against
// the API's table). Handler serves the assets at "/" and "/assets/..." and
// hands every other request to the API unchanged.
package console

import (
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every console asset: scripts, styles,
// images and API calls from this origin only; no inline script or style;
// the console may not be framed.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Options configure the console handler.
type Options struct {
	// API handles every request that is not a console asset. Required.
	API http.Handler
}

// Handler serves the console in front of opts.API.
type Handler struct {
	api   http.Handler
	files http.Handler
}

// New returns the console handler.
func New(opts Options) (*Handler, error) {
	if opts.API == nil {
		return nil, errors.New("console: Options.API is required")
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	return &Handler{api: opts.API, files: http.FileServerFS(sub)}, nil
}

// Assets returns the embedded files (index.html, assets/...).
func Assets() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded directory exists: a build bug
	}
	return sub
}

// isAsset reports whether path names a console file: "/" (index.html) or
// anything under /assets/.
func isAsset(path string) bool {
	return path == "/" || path == "/index.html" || strings.HasPrefix(path, "/assets/")
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isAsset(r.URL.Path) {
		h.api.ServeHTTP(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/index.html" {
		http.Redirect(w, r, "/", http.StatusMovedPermanently)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != "/" {
		http.NotFound(w, r) // no directory listings
		return
	}
	h.files.ServeHTTP(w, r)
}
