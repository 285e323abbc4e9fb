package wire

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// internalProto compiles api/internal.proto with a protobuf compiler, so the hand-written codec is
// checked against the file other programs read, not against itself.
func internalProto(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	c := protocompile.Compiler{Resolver: &protocompile.SourceResolver{ImportPaths: []string{"../../api"}}}
	files, err := c.Compile(context.Background(), "internal.proto")
	if err != nil {
		t.Fatal(err)
	}
	return files[0]
}

// throughProtobuf reads b as the named message with the protobuf library, and returns it as protojson
// (field names as in the .proto) and encoded again by the library.
func throughProtobuf(t *testing.T, fd protoreflect.FileDescriptor, name string, b []byte) (string, []byte) {
	t.Helper()
	msg := dynamicpb.NewMessage(fd.Messages().ByName(protoreflect.Name(name)))
	if err := proto.Unmarshal(b, msg); err != nil {
		t.Fatalf("protobuf cannot read our %s: %v", name, err)
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return string(js), again
}

// sameJSON fails unless a and b are the same JSON value.
func sameJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestDeliverBatchRequestMatchesTheProtoFile(t *testing.T) {
	fd := internalProto(t)
	items := []DeliverItem{
		{Message: Message{ID: "01JABC", Data: json.RawMessage(`{"text":"héllo"}`), TS: 1764000000123}, UIDs: []string{"alice", "bob"}, TraceID: "t-1"},
		{Message: Message{ID: "m2", Data: json.RawMessage(`7`), TS: -5}, UIDs: []string{"carol"}},
		{Message: Message{ID: "m3", Data: json.RawMessage(`"x"`)}},
	}
	js, again := throughProtobuf(t, fd, "DeliverBatchRequest", AppendDeliverBatchRequest(nil, items))
	// protojson shows bytes in base64 and int64 as strings.
	sameJSON(t, js, `{"items":[
		{"message":{"id":"01JABC","data":"eyJ0ZXh0IjoiaMOpbGxvIn0=","ts":"1764000000123"},"uids":["alice","bob"],"trace_id":"t-1"},
		{"message":{"id":"m2","data":"Nw==","ts":"-5"},"uids":["carol"]},
		{"message":{"id":"m3","data":"Ingi"}}]}`)

	got, err := ParseDeliverBatchRequest(again)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, items) {
		t.Fatalf("read back %+v\nwant %+v", got, items)
	}
}

func TestDeliverBatchResponseMatchesTheProtoFile(t *testing.T) {
	fd := internalProto(t)
	items := []DeliverResponse{
		{Results: []DeliverResult{
			{UID: "alice", Delivered: 2, ConnIDs: []string{"ps-1-a", "ps-1-b"}},
			{UID: "bob", ConnIDs: []string{}},
		}},
		{Results: []DeliverResult{}, Error: &ErrorDetail{Code: "invalid_request", Message: "message needs an id"}},
		{Results: []DeliverResult{}},
	}
	js, again := throughProtobuf(t, fd, "DeliverBatchResponse", AppendDeliverBatchResponse(nil, items))
	sameJSON(t, js, `{"items":[
		{"results":[{"uid":"alice","delivered":"2","conn_ids":["ps-1-a","ps-1-b"]},{"uid":"bob"}]},
		{"error":{"code":"invalid_request","message":"message needs an id"}},
		{}]}`)

	got, err := ParseDeliverBatchResponse(again)
	if err != nil {
		t.Fatal(err)
	}
	items[0].Results[1].ConnIDs = nil // an empty list and no list look the same in protobuf
	if !reflect.DeepEqual(got, items) {
		t.Fatalf("read back %+v\nwant %+v", got, items)
	}
}

func TestParseDeliverBatchSkipsUnknownFields(t *testing.T) {
	b := AppendDeliverBatchRequest(nil, []DeliverItem{{Message: Message{ID: "m", Data: json.RawMessage(`1`)}, UIDs: []string{"u"}}})
	// A newer sender's additions: a varint at the top, a fixed64 and a string inside a second item.
	b = protowire.AppendTag(b, 9, protowire.VarintType)
	b = protowire.AppendVarint(b, 42)
	var inner []byte
	inner = protowire.AppendTag(inner, 7, protowire.Fixed64Type)
	inner = protowire.AppendFixed64(inner, 1)
	inner = protowire.AppendTag(inner, fieldItemUIDs, protowire.BytesType)
	inner = protowire.AppendString(inner, "v")
	inner = protowire.AppendTag(inner, 100, protowire.BytesType)
	inner = protowire.AppendString(inner, "later")
	b = protowire.AppendTag(b, fieldBatchItems, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)

	got, err := ParseDeliverBatchRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []DeliverItem{{Message: Message{ID: "m", Data: json.RawMessage(`1`)}, UIDs: []string{"u"}}, {UIDs: []string{"v"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseDeliverBatchRefusesBrokenInput(t *testing.T) {
	good := AppendDeliverBatchRequest(nil, []DeliverItem{{Message: Message{ID: "m", Data: json.RawMessage(`1`), TS: 3}, UIDs: []string{"u"}}})
	wrongType := protowire.AppendTag(nil, fieldBatchItems, protowire.VarintType)
	wrongType = protowire.AppendVarint(wrongType, 1)
	tsAsBytes := protowire.AppendTag(nil, fieldItemMessage, protowire.BytesType)
	tsAsBytes = protowire.AppendBytes(tsAsBytes, protowire.AppendString(protowire.AppendTag(nil, fieldMessageTS, protowire.BytesType), "1"))
	tsAsBytes = protowire.AppendBytes(protowire.AppendTag(nil, fieldBatchItems, protowire.BytesType), tsAsBytes)
	for name, b := range map[string][]byte{
		"cut short":       good[:len(good)-1],
		"length too long": append(protowire.AppendTag(nil, fieldBatchItems, protowire.BytesType), 0x7f, 1, 2),
		"bad tag":         {0x00},
		"items a varint":  wrongType,
		"ts as bytes":     tsAsBytes,
		"not protobuf":    []byte(`{"items":[]}`),
	} {
		if items, err := ParseDeliverBatchRequest(b); err == nil {
			t.Errorf("%s: read %+v, want an error", name, items)
		}
	}
	if _, err := ParseDeliverBatchResponse(wrongType); !errors.Is(err, errWireType) {
		t.Errorf("answer with items a varint: %v", err)
	}
	if items, err := ParseDeliverBatchRequest(nil); err != nil || len(items) != 0 {
		t.Errorf("empty batch: %v, %v", items, err)
	}
}

func BenchmarkDeliverBatch(b *testing.B) {
	items := make([]DeliverItem, 9)
	answers := make([]DeliverResponse, 9)
	for i := range items {
		items[i] = DeliverItem{Message: Message{ID: "01KBQ7ZJ8V0W3T6Y5M2N4P6R8S", Data: json.RawMessage(`{"seq":123456,"sent":1764921600000000000}`), TS: 1764921600000}, UIDs: []string{"lg-12345"}, TraceID: "0af7651916cd43dd8448eb211c80319c"}
		answers[i] = DeliverResponse{Results: []DeliverResult{{UID: "lg-12345", Delivered: 1, ConnIDs: []string{"ps-1-00000000000012ab"}}}}
	}
	b.Run("protobuf", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendDeliverBatchRequest(buf[:0], items)
			if _, err := ParseDeliverBatchRequest(buf); err != nil {
				b.Fatal(err)
			}
			buf = AppendDeliverBatchResponse(buf[:0], answers)
			if _, err := ParseDeliverBatchResponse(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			buf, _ := json.Marshal(DeliverBatchRequest{Items: items})
			var req DeliverBatchRequest
			if err := json.Unmarshal(buf, &req); err != nil {
				b.Fatal(err)
			}
			buf, _ = json.Marshal(DeliverBatchResponse{Items: answers})
			var resp DeliverBatchResponse
			if err := json.Unmarshal(buf, &resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzParseDeliverBatch: whatever bytes reach a push-server or come back to push-route, reading them
// ends in items or an error, never a panic; what reads is written back to the same thing.
func FuzzParseDeliverBatch(f *testing.F) {
	f.Add(AppendDeliverBatchRequest(nil, []DeliverItem{{Message: Message{ID: "m", Data: json.RawMessage(`{"a":1}`), TS: 7}, UIDs: []string{"u", "v"}, TraceID: "t"}}))
	f.Add(AppendDeliverBatchResponse(nil, []DeliverResponse{{Results: []DeliverResult{{UID: "u", Delivered: 1, ConnIDs: []string{"c"}}}}, {Error: &ErrorDetail{Code: "x", Message: "y"}}}))
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if items, err := ParseDeliverBatchRequest(b); err == nil {
			again, err := ParseDeliverBatchRequest(AppendDeliverBatchRequest(nil, items))
			if err != nil || !sameItems(again, items) {
				t.Fatalf("request %x read as %+v, written and read again as %+v (%v)", b, items, again, err)
			}
		}
		if items, err := ParseDeliverBatchResponse(b); err == nil {
			again, err := ParseDeliverBatchResponse(AppendDeliverBatchResponse(nil, items))
			if err != nil || !reflect.DeepEqual(again, items) {
				t.Fatalf("answer %x read as %+v, written and read again as %+v (%v)", b, items, again, err)
			}
		}
	})
}

// sameItems compares requests as protobuf sees them: an empty data, list or string is no field.
func sameItems(a, b []DeliverItem) bool {
	return slices.EqualFunc(a, b, func(x, y DeliverItem) bool {
		return x.Message.ID == y.Message.ID && string(x.Message.Data) == string(y.Message.Data) && x.Message.TS == y.Message.TS &&
			slices.Equal(x.UIDs, y.UIDs) && x.TraceID == y.TraceID
	})
}
