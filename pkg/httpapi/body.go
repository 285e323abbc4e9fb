package httpapi

import (
	"bytes"
	"errors"
	"net/http"
)

// ReadBody reads the whole request body, at most limit bytes, for a handler that decodes a binary
// body itself. The returned error is an *Error: body_too_large (413) over the limit, invalid_request
// (400) when the body could not be read to its end.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= limit {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // one allocation: ReadFrom wants MinRead spare
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, Errorf(CodeBodyTooLarge, "request body is larger than %d bytes", limit)
		}
		return nil, Errorf(CodeInvalidRequest, "request body could not be read: %v", err)
	}
	return buf.Bytes(), nil
}
