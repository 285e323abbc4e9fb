// Package httpapi holds the conventions every Herald JSON API shares: how request bodies are decoded
// and limited, and how errors are written ({"error":{"code","message"}} with a fitting status).
package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// Error codes. Each has exactly one HTTP status, in statusByCode; clients match on the code.
const (
	CodeMalformedJSON   = "malformed_json"
	CodeInvalidRequest  = "invalid_request"
	CodeBodyTooLarge    = "body_too_large"
	CodeHeaderTooLarge  = "header_too_large"
	CodeUnauthorized    = "unauthorized"
	CodeTokenExpired    = "token_expired"
	CodeBadCredentials  = "bad_credentials"
	CodeForbidden       = "forbidden"
	CodeAccountDisabled = "account_disabled"
	CodeNotFound        = "not_found"
	CodeMethodNotAllow  = "method_not_allowed"
	CodeConflict        = "conflict"
	CodeRateLimited     = "rate_limited"
	CodeNoPushServer    = "no_push_server"
	CodeUnavailable     = "unavailable"
	CodeNotReady        = "not_ready"
	CodeInternal        = "internal"
)

var statusByCode = map[string]int{
	CodeMalformedJSON:   http.StatusBadRequest,
	CodeInvalidRequest:  http.StatusBadRequest,
	CodeBodyTooLarge:    http.StatusRequestEntityTooLarge,
	CodeHeaderTooLarge:  http.StatusRequestHeaderFieldsTooLarge,
	CodeUnauthorized:    http.StatusUnauthorized,
	CodeTokenExpired:    http.StatusUnauthorized,
	CodeBadCredentials:  http.StatusUnauthorized,
	CodeForbidden:       http.StatusForbidden,
	CodeAccountDisabled: http.StatusForbidden,
	CodeNotFound:        http.StatusNotFound,
	CodeMethodNotAllow:  http.StatusMethodNotAllowed,
	CodeConflict:        http.StatusConflict,
	CodeRateLimited:     http.StatusTooManyRequests,
	CodeNoPushServer:    http.StatusServiceUnavailable,
	CodeUnavailable:     http.StatusServiceUnavailable,
	CodeNotReady:        http.StatusServiceUnavailable,
	CodeInternal:        http.StatusInternalServerError,
}

// Error is an API error: what the client sees. Handlers return it (or wrap it) and WriteError turns it
// into the response.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when positive, is sent as the Retry-After header (whole seconds, rounded up).
	RetryAfter time.Duration
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Status is the HTTP status for the error's code; unknown codes are 500.
func (e *Error) Status() int {
	if s, ok := statusByCode[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// WriteError writes err as a JSON error. An error that is not (and does not wrap) an *Error is an
// internal error: its text may hold details a client must not see, so the client gets a generic message
// and the caller is expected to have logged it.
func WriteError(w http.ResponseWriter, err error) {
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		apiErr = &Error{Code: CodeInternal, Message: "internal error"}
	}
	if apiErr.RetryAfter > 0 {
		secs := int((apiErr.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	WriteJSON(w, apiErr.Status(), wire.ErrorBody{Error: wire.ErrorDetail{Code: apiErr.Code, Message: apiErr.Message}})
}
