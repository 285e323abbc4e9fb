package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
)

// pushForm is the push page's form, kept to show it again with its values.
type pushForm struct {
	Target string // "uids" or "all"
	UIDs   string
	Data   string
	TTL    string
}

type pushView struct {
	Form      pushForm
	Push      *wire.PushResponse
	Broadcast *wire.PushBroadcastResponse
}

// checkData accepts any JSON value but null, as push-route does; the console checks first so an
// operator's typo is a form error with a clear message.
func checkData(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0:
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "data is required: any JSON value, e.g. {\"text\":\"hello\"}")
	case !json.Valid(data):
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "data is not valid JSON (strings need double quotes)")
	case string(data) == "null":
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "data must not be null")
	}
	return nil
}

func checkUIDs(uids []string) error {
	if len(uids) == 0 {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "name at least one uid")
	}
	for _, uid := range uids {
		if err := ident.Check("uid", uid); err != nil {
			return httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
		}
	}
	return nil
}

// parse turns the form into a push (Target "uids") or a broadcast request.
func (f pushForm) parse() (wire.PushRequest, error) {
	var req wire.PushRequest
	if err := checkData([]byte(f.Data)); err != nil {
		return req, err
	}
	req.Data = json.RawMessage(strings.TrimSpace(f.Data))
	if ttl := strings.TrimSpace(f.TTL); ttl != "" {
		n, err := strconv.ParseInt(ttl, 10, 64)
		if err != nil || n < 0 {
			return req, httpapi.Errorf(httpapi.CodeInvalidRequest, "ttl must be a whole number of seconds, 0 or more")
		}
		req.TTLS = n
	}
	if f.Target == "all" {
		if req.TTLS > 0 {
			return req, httpapi.Errorf(httpapi.CodeInvalidRequest, "a broadcast reaches connected devices only; it takes no ttl")
		}
		return req, nil
	}
	req.UIDs = strings.FieldsFunc(f.UIDs, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	return req, checkUIDs(req.UIDs)
}

func handlePushForm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form := pushForm{Target: "uids", UIDs: r.URL.Query().Get("uid"), Data: `{"text":"hello"}`}
		render(w, r, http.StatusOK, "push", view{Title: "Push", Nav: "push", Data: pushView{Form: form}})
	})
}

func handlePushPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form := pushForm{Target: r.PostFormValue("target"), UIDs: r.PostFormValue("uids"), Data: r.PostFormValue("data"), TTL: r.PostFormValue("ttl_s")}
		pv, notice, err := sendForm(r, logger, d, form)
		v := view{Title: "Push", Nav: "push", Data: pv, Notice: notice}
		if err != nil {
			v.Error = errText(err)
			render(w, r, statusOf(err), "push", v)
			return
		}
		render(w, r, http.StatusOK, "push", v)
	})
}

// sendForm pushes or broadcasts what the form says, and returns the page to show and its notice.
func sendForm(r *http.Request, logger *slog.Logger, d serverDeps, form pushForm) (pushView, string, error) {
	pv := pushView{Form: form}
	req, err := form.parse()
	if err != nil {
		return pv, "", err
	}
	if form.Target == "all" {
		resp, err := d.pushAPI.broadcast(r.Context(), req.Data)
		if err != nil {
			return pv, "", err
		}
		done(logger, d, r, "broadcast", "id", resp.ID, "delivered", resp.Delivered)
		pv.Broadcast = &resp
		return pv, "Broadcast " + resp.ID + " written to " + strconv.Itoa(resp.Delivered) + " connections.", nil
	}
	resp, err := d.pushAPI.push(r.Context(), req)
	if err != nil {
		return pv, "", err
	}
	done(logger, d, r, "push", "id", resp.ID, "uids", len(req.UIDs), "ttl_s", req.TTLS)
	pv.Push = &resp
	return pv, "Message " + resp.ID + " pushed.", nil
}

func handlePushAPI(logger *slog.Logger, d serverDeps, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.PushRequest
		if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkData(req.Data); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkUIDs(req.UIDs); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		resp, err := d.pushAPI.push(r.Context(), req)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		done(logger, d, r, "push", "id", resp.ID, "uids", len(req.UIDs), "ttl_s", req.TTLS)
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}

func handleBroadcastAPI(logger *slog.Logger, d serverDeps, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.PushBroadcastRequest
		if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkData(req.Data); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		resp, err := d.pushAPI.broadcast(r.Context(), req.Data)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		done(logger, d, r, "broadcast", "id", resp.ID, "delivered", resp.Delivered)
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}
