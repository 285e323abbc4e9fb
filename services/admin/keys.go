package main

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// keyInfo is an API key as the console lists it; the key itself is shown once, when it is created.
type keyInfo struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func toKeyInfo(k apikey.Key) keyInfo {
	return keyInfo{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
}

// newKey is a created key with its plaintext.
type newKey struct {
	keyInfo
	Key string `json:"key"`
}

func checkKeyName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > 128 {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "a key's name is 1 to 128 characters")
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 || !utf8.ValidString(name) {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "a key's name must be printable text")
	}
	return nil
}

func listKeys(r *http.Request, logger *slog.Logger, d serverDeps) ([]keyInfo, error) {
	keys, err := d.keys.List(r.Context())
	if err != nil {
		return nil, publicError(logger, "list API keys", err)
	}
	out := make([]keyInfo, len(keys))
	for i, k := range keys {
		out[i] = toKeyInfo(k)
	}
	return out, nil
}

func createKey(r *http.Request, logger *slog.Logger, d serverDeps, name string) (newKey, error) {
	name = strings.TrimSpace(name)
	if err := checkKeyName(name); err != nil {
		return newKey{}, err
	}
	plain, k, err := d.keys.Create(r.Context(), name)
	if err != nil {
		return newKey{}, publicError(logger, "create an API key", err)
	}
	done(logger, d, r, "key_create", "key_id", k.ID, "name", name)
	return newKey{keyInfo: toKeyInfo(k), Key: plain}, nil
}

func revokeKey(r *http.Request, logger *slog.Logger, d serverDeps) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, httpapi.Errorf(httpapi.CodeNotFound, "no API key %q", r.PathValue("id"))
	}
	if err := d.keys.Revoke(r.Context(), id); errors.Is(err, apikey.ErrNotFound) {
		return id, httpapi.Errorf(httpapi.CodeNotFound, "no API key %d", id)
	} else if err != nil {
		return id, publicError(logger, "revoke the API key", err)
	}
	done(logger, d, r, "key_revoke", "key_id", id)
	return id, nil
}

type keysView struct {
	Keys    []keyInfo
	Created *newKey
	Name    string
}

func keysPage(w http.ResponseWriter, r *http.Request, logger *slog.Logger, d serverDeps, notice string, kv keysView, err error) {
	v := view{Title: "API keys", Nav: "keys"}
	status := http.StatusOK
	if err != nil {
		v.Error, status = errText(err), statusOf(err)
	} else {
		v.Notice = notice
	}
	keys, listErr := listKeys(r, logger, d)
	if listErr != nil && err == nil {
		v.Error, status = errText(listErr), statusOf(listErr)
	}
	kv.Keys = keys
	v.Data = kv
	// The page may hold a key in clear: never cache it.
	w.Header().Set("Cache-Control", "no-store")
	render(w, r, status, "keys", v)
}

func handleKeysPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keysPage(w, r, logger, d, "", keysView{}, nil)
	})
}

func handleKeyCreatePage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PostFormValue("name")
		k, err := createKey(r, logger, d, name)
		if err != nil {
			keysPage(w, r, logger, d, "", keysView{Name: name}, err)
			return
		}
		keysPage(w, r, logger, d, "Key "+k.Name+" created.", keysView{Created: &k}, nil)
	})
}

func handleKeyRevokePage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := revokeKey(r, logger, d)
		keysPage(w, r, logger, d, "Key "+strconv.FormatInt(id, 10)+" revoked.", keysView{}, err)
	})
}

func handleKeysAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys, err := listKeys(r, logger, d)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"keys": keys})
	})
}

func handleKeyCreateAPI(logger *slog.Logger, d serverDeps, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name string `json:"name"`
		}
		if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		k, err := createKey(r, logger, d, req.Name)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		httpapi.WriteJSON(w, http.StatusCreated, k)
	})
}

func handleKeyRevokeAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := revokeKey(r, logger, d)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "revoked": true})
	})
}
