package main

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/heraldpush/herald/pkg/httpapi"
)

// How handlers report what happened: every failure a client sees is an *httpapi.Error (its code
// gives the status, on pages as in the API), and every operator action is counted and logged.

// statusOf is the HTTP status for err on a page: an API error's own, else 500.
func statusOf(err error) int {
	var apiErr *httpapi.Error
	if errors.As(err, &apiErr) {
		return apiErr.Status()
	}
	return http.StatusInternalServerError
}

// errText is the message a page shows for err: an API error's own, else a generic one (the caller
// logged the details).
func errText(err error) string {
	var apiErr *httpapi.Error
	if errors.As(err, &apiErr) {
		return apiErr.Message
	}
	return "internal error; the details are in the admin service's log"
}

// publicError is err as a client may see it: an API error as it is, anything else (MySQL failing,
// since every other failure is an API error already) logged and answered as unavailable.
func publicError(logger *slog.Logger, what string, err error) error {
	var apiErr *httpapi.Error
	if err == nil || errors.As(err, &apiErr) {
		return err
	}
	logger.Error(what, "err", err)
	return httpapi.Errorf(httpapi.CodeUnavailable, "%s: the database is unavailable, retry later", what)
}

// done counts and logs an operator's action, naming the operator.
func done(logger *slog.Logger, d serverDeps, r *http.Request, action string, attrs ...any) {
	d.metrics.actions.WithLabelValues(action).Inc()
	logger.Info("operator action", append([]any{"action", action, "by", currentAuth(r).User}, attrs...)...)
}
