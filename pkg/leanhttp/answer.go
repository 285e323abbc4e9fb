package leanhttp

import (
	"bytes"
	"fmt"
	"net/http"
)

// answer is the http.ResponseWriter a handler gets: the body is buffered whole and written with its
// Content-Length after the handler returns. One per connection, reset for each request.
type answer struct {
	header http.Header
	status int // 0 until WriteHeader or Write
	buf    bytes.Buffer
}

func (w *answer) reset() {
	clear(w.header)
	w.status = 0
	w.buf.Reset()
}

func (w *answer) Header() http.Header { return w.header }

// WriteHeader sets the status once; informational ones (1xx) are not sent, the handler's final
// answer is what the client gets.
func (w *answer) WriteHeader(code int) {
	if code < 100 || code > 999 {
		// As net/http: a programming error, recovered into a 500 by the connection.
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *answer) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}
