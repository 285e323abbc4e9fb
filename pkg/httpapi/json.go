package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// DefaultMaxBody is the request body limit when a service configures none (DESIGN.md: 1 MiB).
const DefaultMaxBody = 1 << 20

// WriteJSON writes v as the JSON response body with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// JSON bodies are never rendered as HTML (Content-Type and nosniff say so), and escaping would turn
	// a hint like "Bearer <key>" into "\u003ckey\u003e".
	enc.SetEscapeHTML(false)
	// The status is already sent; an encode error can only mean the client went away.
	_ = enc.Encode(v)
}

// DecodeJSON reads one JSON value from the request body into dst, reading at most limit bytes.
// Unknown fields are ignored, so an older program accepts a newer one's calls: it is for the internal
// APIs, whose two sides are upgraded one at a time. The returned error is an *Error: body_too_large
// (413) over the limit, malformed_json (400) for anything that is not one JSON value of the right shape.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	return decode(w, r, limit, dst, false)
}

// DecodeStrict is DecodeJSON for the public APIs: a field dst does not have is a 400 invalid_request
// naming it, with the field that was probably meant, because a misspelt optional field ("ttl" for
// "ttl_s") would otherwise be dropped without a word.
func DecodeStrict(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	return decode(w, r, limit, dst, true)
}

func decode(w http.ResponseWriter, r *http.Request, limit int64, dst any, strict bool) error {
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(dst); err != nil {
		if field, ok := unknownField(err); ok {
			return unknownFieldError(field, dst)
		}
		return decodeError(err, limit)
	}
	// Trailing data after the value means the body is not one JSON document.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err, limit)
		}
		return Errorf(CodeMalformedJSON, "request body must hold a single JSON value")
	}
	return nil
}

func decodeError(err error, limit int64) error {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return Errorf(CodeBodyTooLarge, "request body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return Errorf(CodeMalformedJSON, "request body is empty")
	case errors.As(err, &typeErr):
		return Errorf(CodeMalformedJSON, "field %q must be %s", typeErr.Field, typeErr.Type)
	default:
		return Errorf(CodeMalformedJSON, "request body is not valid JSON: %v", err)
	}
}
