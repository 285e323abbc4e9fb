package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// PathDeliverStream is deliver-batch as one long-lived call: push-route opens it once per stream with
// Content-Type ContentTypeBatchStream and keeps writing batches into its body, one frame each, and the
// node answers each in its (chunked) answer body before the next is read. One stream carries one batch
// at a time, as a keep-alive connection carries one call, but without a request's parsing, headers and
// goroutine hand-offs per batch on either side.
const PathDeliverStream = "/internal/v1/deliver-stream"

// ContentTypeBatchStream is the media type of a deliver stream's body and answer: frames, each a
// 4-byte big-endian length and that many bytes of a DeliverBatchRequest (in the body) or
// DeliverBatchResponse (in the answer) in ContentTypeProtobuf's form. A push-server that serves
// PathDeliverStream lists it in its ZooKeeper entry (Encodings).
const ContentTypeBatchStream = "application/x-herald-batch-stream"

// frameHeader is the length prefix of a stream frame.
const frameHeader = 4

// AppendDeliverBatchRequestFrame appends items as one stream frame to b.
func AppendDeliverBatchRequestFrame(b []byte, items []DeliverItem) []byte {
	return appendFrame(b, func(b []byte) []byte { return AppendDeliverBatchRequest(b, items) })
}

// AppendDeliverBatchResponseFrame appends answers as one stream frame to b.
func AppendDeliverBatchResponseFrame(b []byte, answers []DeliverResponse) []byte {
	return appendFrame(b, func(b []byte) []byte { return AppendDeliverBatchResponse(b, answers) })
}

// appendFrame appends the payload appendPayload writes, behind its length.
func appendFrame(b []byte, appendPayload func([]byte) []byte) []byte {
	start := len(b)
	b = appendPayload(append(b, 0, 0, 0, 0))
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-frameHeader))
	return b
}

// ReadFrame reads one stream frame's payload from r into buf (grown as needed) and returns it. A frame
// longer than limit is an error, and the stream is unusable after it. io.EOF means the stream ended
// cleanly between frames; an end inside a frame is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte, limit int) ([]byte, error) {
	var head [frameHeader]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("a frame of %d bytes, over the limit of %d", n, limit)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}
