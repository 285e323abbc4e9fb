package wire

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestAppendPushFrameIsThePushFrame(t *testing.T) {
	for _, m := range []Message{
		{ID: "01KBQ7ZJ8V0W3T6Y5M2N4P6R8S", Data: json.RawMessage(`{"text":"hi","n":[1,2]}`), TS: 1764921600123},
		{ID: "order-7", Data: json.RawMessage(` { "spaced" : true } `), TS: 0},
		{ID: "m", Data: json.RawMessage(`"caf\u00e9 ☕"`), TS: -1},
		{ID: "needs \"escaping\"\n", Data: json.RawMessage(`null`), TS: 5},
		{ID: "ünïcode", Data: json.RawMessage(`12.5e3`), TS: 5},
		{ID: "longest-ts", Data: json.RawMessage(`[]`), TS: math.MinInt64},
	} {
		got, err := m.AppendPushFrame([]byte("prefix"))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		want, _ := json.Marshal(Push{Type: TypePush, ID: m.ID, Data: m.Data, TS: m.TS})
		if string(got) != "prefix"+string(want) {
			t.Errorf("got  %s\nwant prefix%s", got, want)
		}
		if plain := !strings.ContainsAny(m.ID, "\"\nüï"); plain && len(want) > m.PushFrameLen() {
			t.Errorf("%+v: PushFrameLen %d, frame %d bytes", m, m.PushFrameLen(), len(want))
		}
	}
	for _, data := range []string{``, `{`, `{"a":1} x`, `'x'`} {
		if b, err := (Message{ID: "m", Data: json.RawMessage(data)}).AppendPushFrame(nil); err == nil {
			t.Errorf("data %q made %s, want an error", data, b)
		}
	}
}
