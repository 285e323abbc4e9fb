package main

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"
	"unicode/utf8"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static/*
var staticFiles embed.FS

// view is what every page template gets: the layout's fields, and the page's own in Data.
type view struct {
	Title  string
	Nav    string // the active navigation entry
	User   string // empty on the login page
	CSRF   string // the session's CSRF token, for every form's hidden field
	Notice string
	Error  string
	Data   any
}

// pages holds one template per page: the layout with that page's "content". They are parsed at start
// from the embedded files, so a broken template fails the first test, not a request in production.
var pages = parsePages()

// assetVersion changes with the static files' content; it busts browser caches on upgrades.
var assetVersion = hashStatic()

var funcs = template.FuncMap{
	"asset": func(name string) string { return "/static/" + name + "?v=" + assetVersion },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago":     func(t time.Time) string { return ago(time.Since(t)) },
	"ms":      func(ms int64) time.Time { return time.UnixMilli(ms) },
	"bytes":   humanBytes,
	"rate":    func(v float64) string { return fmt.Sprintf("%.1f/s", v) },
	"preview": func(s string) string { return preview(s, 160) },
}

func parsePages() map[string]*template.Template {
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, path := range names {
		name := path[len("templates/") : len(path)-len(".html")]
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", path))
	}
	return out
}

func hashStatic() string {
	h := sha256.New()
	_ = fs.WalkDir(staticFiles, "static", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := staticFiles.ReadFile(path)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// staticHandler serves the embedded CSS and JavaScript; their URLs carry assetVersion, so they may be
// cached for long.
func staticHandler() http.Handler {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}

// render writes the page with the given status. The template runs into a buffer first, so a failure
// never leaves half a page.
func render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	if v.User == "" {
		v.User = currentAuth(r).User
	}
	if v.CSRF == "" {
		v.CSRF = currentAuth(r).CSRF
	}
	var buf bytes.Buffer
	t, ok := pages[name]
	if !ok {
		http.Error(w, "internal error: no page "+name, http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		http.Error(w, "internal error: page "+name, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// renderStatus writes a page with only a message: refusals, unknown pages.
func renderStatus(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	render(w, r, status, "message", view{Title: title, Error: message})
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm ago", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// preview cuts s to at most n characters, marking the cut.
func preview(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
