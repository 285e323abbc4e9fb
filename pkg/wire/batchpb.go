package wire

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// ContentTypeProtobuf is the media type of the deliver-batch call's binary form: the same request and
// answer as the JSON form, in protocol buffers' wire format (api/internal.proto). A push-server that
// reads it says so in its ZooKeeper entry (Encodings); push-route then sends every deliver-batch in it,
// which spares both sides most of the work of a JSON batch.
const ContentTypeProtobuf = "application/x-protobuf"

// Field numbers of api/internal.proto.
const (
	fieldBatchItems = 1 // DeliverBatchRequest.items, DeliverBatchResponse.items

	fieldItemMessage = 1
	fieldItemUIDs    = 2
	fieldItemTraceID = 3

	fieldMessageID   = 1
	fieldMessageData = 2
	fieldMessageTS   = 3

	fieldResponseResults = 1
	fieldResponseError   = 2

	fieldResultUID       = 1
	fieldResultDelivered = 2
	fieldResultConnIDs   = 3

	fieldErrorCode    = 1
	fieldErrorMessage = 2
)

// AppendDeliverBatchRequest appends the binary form of a DeliverBatchRequest of items to b.
func AppendDeliverBatchRequest(b []byte, items []DeliverItem) []byte {
	size := 0
	for i := range items {
		size += 1 + protowire.SizeBytes(itemSize(&items[i]))
	}
	b = slices.Grow(b, size)
	for i := range items {
		it := &items[i]
		b = protowire.AppendTag(b, fieldBatchItems, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(itemSize(it)))
		b = protowire.AppendTag(b, fieldItemMessage, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(messageSize(&it.Message)))
		b = appendString(b, fieldMessageID, it.Message.ID)
		if len(it.Message.Data) > 0 {
			b = protowire.AppendTag(b, fieldMessageData, protowire.BytesType)
			b = protowire.AppendBytes(b, it.Message.Data)
		}
		b = appendInt(b, fieldMessageTS, it.Message.TS)
		for _, uid := range it.UIDs {
			b = protowire.AppendTag(b, fieldItemUIDs, protowire.BytesType)
			b = protowire.AppendString(b, uid)
		}
		b = appendString(b, fieldItemTraceID, it.TraceID)
	}
	return b
}

// ParseDeliverBatchRequest reads the binary form of a DeliverBatchRequest. The messages' Data share b's
// memory.
func ParseDeliverBatchRequest(b []byte) ([]DeliverItem, error) {
	// Counted first, so the items are one allocation, not a slice regrown as they come.
	n, count := 0, fields{b: b, sc: batchSchema}
	for range count.each {
		n++
	}
	items := make([]DeliverItem, 0, n)
	batch := fields{b: b, sc: batchSchema}
	for f := range batch.each {
		var it DeliverItem
		fs := fields{b: f.bytes, sc: itemSchema}
		for f := range fs.each {
			switch f.num {
			case fieldItemMessage:
				ms := fields{b: f.bytes, sc: messageSchema}
				for f := range ms.each {
					switch f.num {
					case fieldMessageID:
						it.Message.ID = string(f.bytes)
					case fieldMessageData:
						it.Message.Data = f.bytes
					case fieldMessageTS:
						it.Message.TS = int64(f.varint)
					}
				}
				fs.fail(ms.err)
			case fieldItemUIDs:
				it.UIDs = append(it.UIDs, string(f.bytes))
			case fieldItemTraceID:
				it.TraceID = string(f.bytes)
			}
		}
		batch.fail(fs.err)
		items = append(items, it)
	}
	if batch.err != nil {
		return nil, fmt.Errorf("deliver-batch request: %w", batch.err)
	}
	return items, nil
}

// AppendDeliverBatchResponse appends the binary form of a DeliverBatchResponse of items to b.
func AppendDeliverBatchResponse(b []byte, items []DeliverResponse) []byte {
	size := 0
	for i := range items {
		size += 1 + protowire.SizeBytes(responseSize(&items[i]))
	}
	b = slices.Grow(b, size)
	for i := range items {
		it := &items[i]
		b = protowire.AppendTag(b, fieldBatchItems, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(responseSize(it)))
		for j := range it.Results {
			r := &it.Results[j]
			b = protowire.AppendTag(b, fieldResponseResults, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(resultSize(r)))
			b = appendString(b, fieldResultUID, r.UID)
			b = appendInt(b, fieldResultDelivered, int64(r.Delivered))
			for _, id := range r.ConnIDs {
				b = protowire.AppendTag(b, fieldResultConnIDs, protowire.BytesType)
				b = protowire.AppendString(b, id)
			}
		}
		if e := it.Error; e != nil {
			b = protowire.AppendTag(b, fieldResponseError, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(errorSize(e)))
			b = appendString(b, fieldErrorCode, e.Code)
			b = appendString(b, fieldErrorMessage, e.Message)
		}
	}
	return b
}

// ParseDeliverBatchResponse reads the binary form of a DeliverBatchResponse.
func ParseDeliverBatchResponse(b []byte) ([]DeliverResponse, error) {
	var items []DeliverResponse
	batch := fields{b: b, sc: batchSchema}
	for f := range batch.each {
		// As in the JSON form, an item names its results even when there are none.
		it := DeliverResponse{Results: []DeliverResult{}}
		fs := fields{b: f.bytes, sc: responseSchema}
		for f := range fs.each {
			switch f.num {
			case fieldResponseResults:
				var r DeliverResult
				rs := fields{b: f.bytes, sc: resultSchema}
				for f := range rs.each {
					switch f.num {
					case fieldResultUID:
						r.UID = string(f.bytes)
					case fieldResultDelivered:
						r.Delivered = int(int64(f.varint))
					case fieldResultConnIDs:
						r.ConnIDs = append(r.ConnIDs, string(f.bytes))
					}
				}
				fs.fail(rs.err)
				it.Results = append(it.Results, r)
			case fieldResponseError:
				e := &ErrorDetail{}
				es := fields{b: f.bytes, sc: errorSchema}
				for f := range es.each {
					switch f.num {
					case fieldErrorCode:
						e.Code = string(f.bytes)
					case fieldErrorMessage:
						e.Message = string(f.bytes)
					}
				}
				fs.fail(es.err)
				it.Error = e
			}
		}
		batch.fail(fs.err)
		items = append(items, it)
	}
	if batch.err != nil {
		return nil, fmt.Errorf("deliver-batch answer: %w", batch.err)
	}
	return items, nil
}

// field is one field of a message: a length-delimited field's content, or a varint's value.
type field struct {
	num    protowire.Number
	bytes  []byte
	varint uint64
}

// errWireType reports a known field sent with another wire type than api/internal.proto gives it.
var errWireType = errors.New("a field has the wrong wire type")

// A schema names a message's fields: known has bit n set for field n, varints for those of them
// that are varints (the others are length-delimited).
type schema struct{ known, varints uint64 }

var (
	batchSchema    = schema{known: 1 << fieldBatchItems}
	itemSchema     = schema{known: 1<<fieldItemMessage | 1<<fieldItemUIDs | 1<<fieldItemTraceID}
	messageSchema  = schema{known: 1<<fieldMessageID | 1<<fieldMessageData | 1<<fieldMessageTS, varints: 1 << fieldMessageTS}
	responseSchema = schema{known: 1<<fieldResponseResults | 1<<fieldResponseError}
	resultSchema   = schema{known: 1<<fieldResultUID | 1<<fieldResultDelivered | 1<<fieldResultConnIDs, varints: 1 << fieldResultDelivered}
	errorSchema    = schema{known: 1<<fieldErrorCode | 1<<fieldErrorMessage}
)

// fields reads the fields of one message of schema sc from b. Its first error stops it and stays in
// err; fail records an error found in a field's content, which stops it too.
type fields struct {
	b   []byte
	sc  schema
	err error
}

func (r *fields) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// each yields every known field, in order, and skips the others, as protobuf skips fields it does not
// know (a newer sender's additions).
func (r *fields) each(yield func(field) bool) {
	for len(r.b) > 0 && r.err == nil {
		num, typ, n := protowire.ConsumeTag(r.b)
		if n < 0 {
			r.fail(protowire.ParseError(n))
			return
		}
		r.b = r.b[n:]
		f := field{num: num}
		switch typ {
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(r.b)
		case protowire.VarintType:
			f.varint, n = protowire.ConsumeVarint(r.b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, r.b)
		}
		if n < 0 {
			r.fail(protowire.ParseError(n))
			return
		}
		r.b = r.b[n:]
		if num >= 64 || r.sc.known&(1<<num) == 0 {
			continue
		}
		if wantVarint := r.sc.varints&(1<<num) != 0; wantVarint != (typ == protowire.VarintType) || !wantVarint && typ != protowire.BytesType {
			r.fail(fmt.Errorf("field %d: %w", num, errWireType))
			return
		}
		if !yield(f) {
			return
		}
	}
}

// appendString appends a length-delimited field, left out when empty as proto3 leaves out defaults.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendInt appends an int64 field (a varint: negative numbers take ten bytes, as in protobuf).
func appendInt(b []byte, num protowire.Number, n int64) []byte {
	if n == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(n))
}

// The sizes below are those of a message's fields without its own tag and length.

func stringSize(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func intSize(n int64) int {
	if n == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(uint64(n))
}

func messageSize(m *Message) int {
	n := stringSize(m.ID) + intSize(m.TS)
	if len(m.Data) > 0 {
		n += 1 + protowire.SizeBytes(len(m.Data))
	}
	return n
}

func itemSize(it *DeliverItem) int {
	n := 1 + protowire.SizeBytes(messageSize(&it.Message)) + stringSize(it.TraceID)
	for _, uid := range it.UIDs {
		n += 1 + protowire.SizeBytes(len(uid))
	}
	return n
}

func resultSize(r *DeliverResult) int {
	n := stringSize(r.UID) + intSize(int64(r.Delivered))
	for _, id := range r.ConnIDs {
		n += 1 + protowire.SizeBytes(len(id))
	}
	return n
}

func errorSize(e *ErrorDetail) int { return stringSize(e.Code) + stringSize(e.Message) }

func responseSize(it *DeliverResponse) int {
	n := 0
	for j := range it.Results {
		n += 1 + protowire.SizeBytes(resultSize(&it.Results[j]))
	}
	if it.Error != nil {
		n += 1 + protowire.SizeBytes(errorSize(it.Error))
	}
	return n
}
