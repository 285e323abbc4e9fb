package wire

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

func TestStreamFrames(t *testing.T) {
	items := []DeliverItem{{Message: Message{ID: "m1", Data: []byte(`{"a":1}`), TS: 7}, UIDs: []string{"u1", "u2"}, TraceID: "t"}}
	answers := []DeliverResponse{{Results: []DeliverResult{{UID: "u1", Delivered: 1, ConnIDs: []string{"c"}}}}}
	var stream []byte
	stream = AppendDeliverBatchRequestFrame(stream, items)
	stream = AppendDeliverBatchResponseFrame(stream, answers)
	r := bytes.NewReader(stream)

	frame, err := ReadFrame(r, nil, MaxInternalBody)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDeliverBatchRequest(frame)
	if err != nil || len(got) != 1 || got[0].Message.ID != "m1" || !slices.Equal(got[0].UIDs, items[0].UIDs) {
		t.Fatalf("request frame read back as %+v, %v", got, err)
	}
	frame, err = ReadFrame(r, frame, MaxInternalBody)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseDeliverBatchResponse(frame)
	if err != nil || len(back) != 1 || back[0].Results[0].UID != "u1" || back[0].Results[0].ConnIDs[0] != "c" {
		t.Fatalf("answer frame read back as %+v, %v", back, err)
	}
	if _, err := ReadFrame(r, nil, MaxInternalBody); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestStreamFrameErrors(t *testing.T) {
	frame := AppendDeliverBatchRequestFrame(nil, []DeliverItem{{Message: Message{ID: "m", Data: []byte(`1`)}, UIDs: []string{"u"}}})
	if _, err := ReadFrame(bytes.NewReader(frame), nil, len(frame)-5); err == nil {
		t.Fatal("a frame over the limit was read")
	}
	for _, cut := range []int{2, len(frame) - 1} {
		if _, err := ReadFrame(bytes.NewReader(frame[:cut]), nil, MaxInternalBody); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("a frame cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}
