package main

import (
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/wire"
)

// demoRoom is the demo page's chat room.
const demoRoom = "demo-chat"

//go:embed demo/index.html
var demoPage []byte

// demoPushRequest is what the demo page asks its server to push to the demo user.
type demoPushRequest struct {
	Data json.RawMessage `json:"data"`
	TTLS int64           `json:"ttl_s"`
}

// demo serves the demo web app: the page, the JS client (clients/js/herald.js, read at start), the
// page's configuration (auth's URL and the demo account: this is a development stack), and
// POST /demo/push, which pushes to the demo user with the stack's API key, so the key never reaches
// the browser and the page can push to nobody else, and POST /demo/room, a line of its chat room.
func demo(logger *slog.Logger, clientJS []byte, st Stack) http.Handler {
	push := apiclient.NewPushClient(&http.Client{Timeout: 10 * time.Second}, st.PushAPIURL, st.APIKey)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(demoPage)
	})
	mux.HandleFunc("GET /herald.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(clientJS)
	})
	mux.HandleFunc("GET /demo/config", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"auth_url": st.AuthURL, "uid": st.DemoUID, "password": st.DemoPassword, "room": demoRoom})
	})
	// The chat room: a line typed on the page goes to everyone in it, through the room API.
	mux.HandleFunc("POST /demo/room", func(w http.ResponseWriter, r *http.Request) {
		var req demoPushRequest
		if err := httpapi.DecodeStrict(w, r, 64<<10, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		resp, err := push.RoomPush(r.Context(), demoRoom, wire.RoomPushRequest{Data: req.Data})
		answer(w, logger, resp, err)
	})
	mux.HandleFunc("POST /demo/push", func(w http.ResponseWriter, r *http.Request) {
		var req demoPushRequest
		if err := httpapi.DecodeStrict(w, r, 64<<10, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		resp, err := push.Push(r.Context(), wire.PushRequest{UIDs: []string{st.DemoUID}, Data: req.Data, TTLS: req.TTLS})
		answer(w, logger, resp, err)
	})
	mux.Handle("/", httpapi.Unrouted(mux, "/"))
	return mux
}

// answer relays the push API's answer, or its error, to the page.
func answer(w http.ResponseWriter, logger *slog.Logger, resp any, err error) {
	var apiErr *apiclient.Error
	switch {
	case errors.As(err, &apiErr):
		httpapi.WriteError(w, &httpapi.Error{Code: apiErr.Code, Message: apiErr.Message})
	case err != nil:
		logger.Warn("demo push", "err", err)
		httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "push API: %v", err))
	default:
		httpapi.WriteJSON(w, http.StatusOK, resp)
	}
}
